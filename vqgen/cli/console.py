"""What every command line shares: absl's runner, and a console that shows progress and results only.

Log records (vqgen's details and the libraries': Orbax, absl, JAX) go to `log.txt` in the run's folder, and so
does what native libraries (TensorFlow, XLA, Gloo) write straight to the process's stderr; the console keeps
progress, results, warnings, errors and tracebacks. absl's own flags change that: `--alsologtostderr` also prints
every record, `--logtostderr` prints everything on the console and writes no file, `--stderrthreshold=info`
lowers the console's bar.
"""

import ast
import errno
import logging as std_logging
import os
import sys
import threading
import traceback

from absl import app, flags, logging

from vqgen.errors import Refusal

FLAGS = flags.FLAGS
# Errors of the file system that a person fixes outside vqgen: one line with the fix, not a traceback.
FILE_SYSTEM_ERRORS = {
    errno.ENOSPC: "The disk is full: free space (or choose a --workdir on another disk), then run the same command "
                  "again to resume.",
    errno.EDQUOT: "The disk quota is exhausted: free space, then run the same command again to resume.",
    errno.EFBIG: "A file grew past the size this process may write (ulimit -f): raise the limit and run again.",
    errno.EROFS: "That file system is read-only: choose a writable --workdir / --output.",
    errno.EACCES: "This user may not write or read there: fix the permissions or choose another folder.",
    errno.ENOTDIR: "A path that should be a folder is a file: choose another path.",
}


def log_to_file(directory: str, process: int | None = None) -> str:
  """Sends every log record to <directory>/log.txt (log.<process>.txt for one process of a multi-process run);
  returns the path."""
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.INFO)
    std_logging.getLogger().setLevel(std_logging.INFO)
  std_logging.captureWarnings(True)  # Python warnings become log records too
  std_logging.raiseExceptions = False  # a log line that cannot be written (disk full) is dropped, not a traceback
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
  _library_errors_to(log)
  print(f"Log: {path}", flush=True)
  return path


class _Demote(std_logging.Filter):
  """Orbax's (and asyncio's) errors and warnings become INFO records: log.txt keeps them, tracebacks included, and
  the console keeps vqgen's one line about the same failure (e.g. a failed save: a traceback per array written)."""

  def filter(self, record):
    if record.levelno < std_logging.CRITICAL and ("orbax" in record.pathname or record.name == "asyncio"):
      record.levelno, record.levelname = std_logging.INFO, "INFO"
    return True


def _library_errors_to(log) -> None:
  """Library chatter goes to `log`: Orbax's error records, and the tracebacks of errors raised in library threads
  (Python's, or native ones: TensorStore's callbacks after a failed write); the main thread's errors still reach
  the console."""
  logging.get_absl_handler().addFilter(_Demote())

  def to_log(args):  # threading.excepthook / sys.unraisablehook arguments
    try:
      traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=log)
    except OSError:
      pass  # (a log on a full disk: the main thread's error says so)

  threading.excepthook = to_log
  sys.unraisablehook = to_log


def fail(message: str) -> None:
  """Ends the command with one readable error (no traceback) and exit status 2."""
  sys.stderr.write(f"Error: {message}\n")
  sys.stderr.flush()
  sys.exit(2)


def _parse_flags(argv):
  """absl's flag parsing, with a config override that does not fit the config (an unknown key, a value of the
  wrong type) reported in one line instead of ml_collections' chained tracebacks."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    text = str(e.args[0]) if e.args else str(e)
    while len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # KeyError messages arrive as reprs
      try:
        text = str(ast.literal_eval(text))
      except (ValueError, SyntaxError):
        break
    lines = [line.strip().strip("'\"") for line in text.splitlines() if line.strip()]
    if isinstance(e, (AttributeError, KeyError)) and lines:
      fail(f"no config key {lines[0]!r} (in a --config.* flag). " + " ".join(lines[1:]))
    fail(f"a --config.* flag does not fit the config: {' '.join(lines)}")


def start(main) -> None:
  """Runs `main()` after flag parsing (absl `app.run`), refusing stray positional arguments; a ConfigError (an
  impossible setting, a changed config on resume, a corrupt config.json, a checkpoint of another model, a workdir in
  use: any `vqgen.errors.Refusal`) ends it with its message alone."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's C++ INFO lines (TensorBoard writer)

  def checked(argv):
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present and not FLAGS.logtostderr:
      std_logging.getLogger().setLevel(std_logging.WARNING)  # until log_to_file opens the log (checks run first)
      std_logging.getLogger("absl").setLevel(std_logging.WARNING)  # (absl's own too: Orbax's INFO of a restore)
    try:
      main()
    except Refusal as e:
      fail(str(e))
    except Exception as e:  # pylint: disable=broad-except  (libraries wrap OSErrors: TensorFlow, TensorStore)
      number = getattr(e, "errno", None) if getattr(e, "errno", None) in FILE_SYSTEM_ERRORS else next(
          (n for n in FILE_SYSTEM_ERRORS if os.strerror(n) in str(e)), None)
      if number is None:
        raise
      where = getattr(e, "filename", None) or type(e).__name__
      fail(f"{os.strerror(number)} ({where}). {FILE_SYSTEM_ERRORS[number]}")

  app.run(checked, flags_parser=_parse_flags)
