"""Metric writing and progress reporting.

With TensorFlow importable, clu's writers log to TensorBoard and the console; without it (e.g. GPU machines
with only JAX), a plain writer logs to the console. Either way every scalar also goes to `metrics.jsonl`.
Only process 0 writes.
"""

import json
import logging
import os
import time

import jax
import numpy as np


def _ends_line(path: str) -> bool:
  """Whether a file is empty or ends with a line end."""
  with open(path, "rb") as f:
    if f.seek(0, os.SEEK_END) == 0:
      return True
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b"\n"


class JsonlWriter:
  """Appends {'step': s, name: value, ...} lines to a file; a minimal clu-compatible writer."""

  def __init__(self, path: str):
    self.path = path
    # A line torn by a killed run keeps a line of its own: the first row starts a new line after it.
    self.separator = "\n" if os.path.isfile(path) and not _ends_line(path) else ""

  def write_scalars(self, step: int, scalars: dict):
    with open(self.path, "a") as f:
      f.write(self.separator + json.dumps({"step": int(step), **{k: float(v) for k, v in scalars.items()}}) + "\n")
    self.separator = ""

  def write_images(self, step, images):
    del step, images

  def write_hparams(self, hparams):
    del hparams

  def write_texts(self, step, texts):
    del step, texts

  def flush(self):
    pass

  def close(self):
    pass


class ConsoleWriter(JsonlWriter):
  """Logs scalars through `logging` (the fallback when clu/TensorFlow are unavailable)."""

  def __init__(self):
    super().__init__(path=os.devnull)

  def write_scalars(self, step, scalars):
    logging.info("[%d] %s", step, ", ".join(f"{k}={float(v):.5g}" for k, v in sorted(scalars.items())))


class MultiWriter:

  def __init__(self, writers):
    self.writers = writers

  def __getattr__(self, name):
    def call(*args, **kwargs):
      for w in self.writers:
        getattr(w, name)(*args, **kwargs)
    return call


def create_writer(workdir: str):
  """TensorBoard + console (clu) when available, else console; plus metrics.jsonl. No-op off process 0."""
  if jax.process_index() != 0:
    return MultiWriter([])
  writers = [JsonlWriter(os.path.join(workdir, "metrics.jsonl"))]
  try:
    from clu import metric_writers  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
    writers.append(metric_writers.create_default_writer(os.path.join(workdir, "tensorboard"), asynchronous=False))
  except ImportError as e:
    logging.warning("clu/TensorFlow not importable (%s): no TensorBoard summaries, console only.", e)
    writers.append(ConsoleWriter())
  return MultiWriter(writers)


class Progress:
  """Prints step, loss, steps/s and ETA every time it is called (from the host loop, at log steps)."""

  def __init__(self, total_steps: int, first_step: int):
    self.total, self.t0, self.s0 = total_steps, time.perf_counter(), first_step
    self.last_t, self.last_s = self.t0, first_step

  def __call__(self, step: int, metrics: dict) -> None:
    now = time.perf_counter()
    rate = (step - self.last_s) / max(now - self.last_t, 1e-9)
    overall = (step - self.s0) / max(now - self.t0, 1e-9)
    eta = (self.total - step) / max(overall, 1e-9)
    self.last_t, self.last_s = now, step
    say(f"step {step}/{self.total}  loss {float(metrics.get('loss', np.nan)):.5f}  "
        f"{rate:.2f} steps/s  ETA {time.strftime('%H:%M:%S', time.gmtime(eta))}")


def say(message: str) -> None:
  """A line for the person at the console (progress and results; library details go to the log file)."""
  if jax.process_index() == 0:
    print(message, flush=True)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def write_text(path: str, text: str) -> None:
  """Writes a file atomically: to a temporary name, then renamed (a reader never sees half a file)."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj) -> None:
  write_text(path, json.dumps(obj, indent=2, sort_keys=True))


def _row(line: str) -> dict | None:
  """A metrics.jsonl row ({"step": <int>, ...}), or None for a garbled or incomplete line."""
  try:
    row = json.loads(line)
  except ValueError:
    return None
  step = row.get("step") if isinstance(row, dict) else None
  return row if isinstance(step, int) and not isinstance(step, bool) else None


def _warn_row(path: str, number: int, line: str, what: str) -> None:
  logging.warning("%s:%d is not a metrics row (%r): %s.", path, number, line.rstrip("\n")[:80], what)


def read_rows(path: str) -> list[dict]:
  """The rows of a metrics.jsonl; a garbled or incomplete line is skipped with a warning naming its line."""
  rows = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      row = _row(line)
      if row is None:
        _warn_row(path, number, line, "skipped")
      else:
        rows.append(row)
  return rows


def drop_rows_after(workdir: str, step: int) -> None:
  """Removes the metrics.jsonl rows of steps after `step` (a resumed run logs them again). A garbled or incomplete
  line is kept as it is (readers skip it), with a warning; only a torn last line (a write the kill interrupted, no
  line end) is dropped, with a warning."""
  path = os.path.join(workdir, "metrics.jsonl")
  if jax.process_index() != 0 or not os.path.exists(path):
    return
  with open(path) as f:
    lines = f.readlines()
  keep = []
  for number, line in enumerate(lines, 1):
    row = _row(line)
    if row is None and number == len(lines) and not line.endswith("\n"):
      _warn_row(path, number, line, "a torn last line (an interrupted write), dropped")
    elif row is None:
      _warn_row(path, number, line, "kept as it is; readers skip it")
      keep.append(line)
    elif row["step"] <= step:
      keep.append(line if line.endswith("\n") else line + "\n")
  if keep != lines:
    write_text(path, "".join(keep))


def periodic_actions(num_steps: int, log_every: int, workdir: str, writer, profile: bool) -> list:
  """clu's ReportProgress (steps/s to TensorBoard) and, when asked, a profiler trace around step 10.

  Empty without clu (the Progress printer above still reports). Call each action as `action(step)` every step.
  """
  try:
    from clu import periodic_actions as pa  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
  except ImportError:
    return []
  actions = []
  if jax.process_index() == 0:
    actions.append(pa.ReportProgress(num_train_steps=num_steps, writer=writer, every_steps=log_every,
                                     every_secs=None))
  if profile:
    actions.append(pa.Profile(logdir=os.path.join(workdir, "profile"), num_profile_steps=5, first_profile=10))
  return actions
