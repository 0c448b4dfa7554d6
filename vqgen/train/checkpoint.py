"""Orbax checkpoints of the train state together with the Grain data-iterator state, verified before use.

Both are written in one `CheckpointManager` step, so a run resumed from step k sees exactly the batches an
uninterrupted run would. Restoring takes an abstract state carrying the *current* shardings, so a checkpoint
written on one mesh shape restores onto another.

Integrity: Orbax checks no bytes (a flipped byte in a tensor file restores as a wrong value), so once a save has
completed, every process writes `vqgen_digest.process_<i>.json` into the step's folder: the SHA-256 of the files
it wrote (those named `process_<i>`; process 0 also takes the shared ones). Restoring checks every digest of the
step on every process (so all processes agree on which step is usable). A step whose files differ from their digest, or that Orbax cannot read, is skipped for
the next older one; a training run also moves it to `<checkpoints>_unusable/<step>` (kept for inspection, out of
the way of the step it will write again). A step without a digest (written before digests existed, or killed
between the save and its digest) is restored unverified, with a warning.
"""

import glob
import hashlib
import json
import logging
import os
import re
import shutil

import grain
import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from vqgen.train import writers

DIGEST = "vqgen_digest"  # file names vqgen_digest.process_<i>.json
# Orbax writes a replicated array in slices, one per replica ("replica-parallel"); each slice is a jitted
# `slice_in_dim`, compiled once per array shape, which for small arrays costs far more than the write it spreads:
# the first save of a model of ~150 small arrays on 8 devices took 64 s against 0.1 s unsliced. Arrays whose slice
# per replica would be under 1 MiB are written whole by their first replica.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 1 << 20


def _register_array_handler() -> None:
  default = ocp.type_handlers.get_type_handler(jax.Array)
  handler = ocp.type_handlers.ArrayHandler(
      min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL,
      array_metadata_store=getattr(default, "_array_metadata_store", None))
  absl_logger = logging.getLogger("absl")  # (Orbax warns that a handler is replaced: that is the point)
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)
  finally:
    absl_logger.setLevel(level)


_register_array_handler()


def owner(relpath: str) -> int:
  """The process that wrote a checkpoint file: the i of a `process_<i>` in its path, else 0 (shared files)."""
  match = re.search(r"process_(\d+)", relpath)
  return int(match.group(1)) if match else 0


def file_digests(step_dir: str, process: int | None = None) -> dict:
  """{relative path: SHA-256} of the files of a checkpoint step (of one process's files when `process` is given),
  the digests themselves excluded."""
  out = {}
  for folder, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, step_dir)
      if rel.startswith(DIGEST) or (process is not None and owner(rel) != process):
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
      out[rel] = h.hexdigest()
  return out


class Checkpointer:

  def __init__(self, directory: str, keep: int = 3):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(directory, options=options)
    self.directory = directory
    self._undigested = []

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def save(self, step: int, state, data_iterator=None) -> None:
    """Starts an asynchronous save of `step`; its digest is written once it has completed."""
    self._write_digests()
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    self._undigested.append(step)

  def _write_digests(self) -> None:
    """Waits for the saves in flight, then records the digests of their steps (process 0)."""
    if not self._undigested:
      return
    self.manager.wait_until_finished()
    me = jax.process_index()
    for step in self._undigested:
      folder = self.step_dir(step)
      if os.path.isdir(folder):  # (a step already rotated out by max_to_keep has nothing to digest)
        digests = file_digests(folder, me)
        path = os.path.join(folder, f"{DIGEST}.process_{me}.json")
        with open(path + ".tmp", "w") as f:
          json.dump(digests, f, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
    self._undigested = []

  def verify(self, step: int) -> str | None:
    """What is wrong with the files of `step` (None: they match their digests, or it has none)."""
    folder = self.step_dir(step)
    paths = sorted(glob.glob(os.path.join(folder, f"{DIGEST}.process_*.json")))
    if not paths:
      logging.warning("Checkpoint step %d in %s has no digest (%s.process_<i>.json); restoring it unverified.",
                      step, self.directory, DIGEST)
      return None
    expected = {}
    for path in paths:
      try:
        with open(path) as f:
          expected.update(json.load(f))
      except (OSError, ValueError) as e:
        return f"its digest {os.path.basename(path)} is unreadable ({e})"
    found = {k: v for k, v in file_digests(folder).items() if k in expected}
    missing = sorted(set(expected) - set(found))
    changed = sorted(k for k in found if found[k] != expected[k])
    if missing or changed:
      return (f"{len(missing)} file(s) missing {missing[:3]}, {len(changed)} file(s) changed since the save "
              f"{changed[:3]}")
    return None

  def restore(self, abstract_state, data_iterator=None, step: int | None = None, set_aside: bool = False):
    """Restores into `abstract_state`'s shapes and shardings (and `data_iterator` in place).

    Returns (state, step), or (None, None) when there is no checkpoint. With step=None the newest verified and
    readable checkpoint is used; `set_aside` moves the unusable newer ones out of the checkpoint folder.
    """
    steps = [step] if step is not None else list(reversed(self.all_steps()))
    errors = []
    for s in steps:
      problem = self.verify(s)
      if problem is None:
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
          items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
          restored = self.manager.restore(s, args=ocp.args.Composite(**items))
          return restored["state"], s
        except Exception as e:  # Orbax raises many types for unreadable files.  pylint: disable=broad-except
          problem = f"{type(e).__name__}: {str(e)[:500]}"
      logging.warning("Checkpoint step %d in %s is unusable (%s); trying an older one.", s, self.directory,
                      problem)
      errors.append(f"step {s}: {problem}")
      if set_aside:
        self._set_aside(s)
    if errors:
      advice = (f"they were moved to {self.directory.rstrip('/')}_unusable; run again to train from step 0"
                if set_aside else "move the directory away to start afresh, or fix the files")
      raise RuntimeError(f"No checkpoint in {self.directory} could be restored:\n  " + "\n  ".join(errors) +
                         f"\n{advice[0].upper() + advice[1:]}.")
    return None, None

  def _set_aside(self, step: int) -> None:
    """Moves an unusable step to <checkpoints>_unusable/<step> (process 0) and forgets it."""
    if jax.process_index() == 0:
      base = target = os.path.join(self.directory.rstrip("/") + "_unusable", str(step))
      copies = 0
      while os.path.exists(target):  # an earlier copy of the same step stays too
        copies += 1
        target = f"{base}.{copies}"
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(self.step_dir(step), target)
      writers.say(f"Checkpoint step {step} is unusable: moved to {target} (kept for inspection).")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")  # every process sees the move
    self.manager.reload()

  def wait(self) -> None:
    self._write_digests()

  def close(self) -> None:
    self._write_digests()
    self.manager.close()


def abstract_with_shardings(tree, shardings):
  """ShapeDtypeStructs of `tree` (arrays or abstract values) carrying the given shardings."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
