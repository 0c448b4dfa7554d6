"""What every command line shares: absl's runner, and a console that shows progress and results only.

Log records (vqgen's details and the libraries': Orbax, absl, JAX) go to `log.txt` in the run's folder, and so
does what native libraries (TensorFlow, XLA, Gloo) write straight to the process's stderr; the console keeps
progress, results, warnings, errors and tracebacks. absl's own flags change that: `--alsologtostderr` also prints
every record, `--logtostderr` prints everything on the console and writes no file, `--stderrthreshold=info`
lowers the console's bar.
"""

import logging as std_logging
import os
import sys

from absl import app, flags, logging

FLAGS = flags.FLAGS


def log_to_file(directory: str, process: int | None = None) -> str:
  """Sends every log record to <directory>/log.txt (log.<process>.txt for one process of a multi-process run);
  returns the path."""
  logging.set_verbosity(logging.INFO)
  std_logging.captureWarnings(True)  # Python warnings become log records too
  if FLAGS.logtostderr:
    return ""
  os.makedirs(directory, exist_ok=True)
  name = "log.txt" if process is None else f"log.{process}.txt"
  path = os.path.join(directory, name)
  log = open(path, "a", encoding="utf-8", buffering=1)  # pylint: disable=consider-using-with  (open for the run)
  logging.get_absl_handler().python_handler.stream = log
  if FLAGS["stderrthreshold"].using_default_value:
    FLAGS.stderrthreshold = "warning"
  # Native code writes to file descriptor 2 directly: point it at the log, and Python's stderr at the console.
  sys.stdout.flush()
  sys.stderr.flush()
  console = os.fdopen(os.dup(2), "w", buffering=1)
  os.dup2(log.fileno(), 2)
  sys.stderr = console
  print(f"Log: {path}", flush=True)
  return path


def start(main) -> None:
  """Runs `main()` after flag parsing (absl `app.run`), refusing stray positional arguments."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines (TensorBoard writer)

  def checked(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    main()

  app.run(checked)
