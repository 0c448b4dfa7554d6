"""Orbax checkpoints of the train state together with the Grain data-iterator state and the run's config, verified
before use.

All three are written in one `CheckpointManager` step, so a run resumed from step k sees exactly the batches an
uninterrupted run would, and a step knows the config that wrote it (`<step>/config/metadata`, JSON) even when the
workdir's config.json is lost. Restoring takes an abstract state carrying the *current* shardings, so a checkpoint
written on one mesh shape restores onto another.

Integrity: Orbax checks no bytes (a flipped byte in a tensor file restores as a wrong value), so every save ends
with `vqgen_digest.process_0.json` in the step's folder: the SHA-256 of every file of the step (but Orbax's own
step metadata, which its commit rewrites). Process 0 writes
it in Orbax's post-finalization callback, after every process has written its files and *before* the temporary
folder is renamed to the step, so a step folder that exists has its digest: every step a resume can load is
verified (a step without one, written by an older vqgen or on a file system without atomic renames, is never
loaded). Restoring checks the digest on every process.

What is wrong with a step decides what happens to it:
  - bytes that differ from the digest, no digest, or files Orbax cannot read: *unusable*. The step is skipped for
    the next older one; a training run moves it to `<checkpoints>_unusable/<step>` (kept for inspection, out of
    the way of the step it writes again), with one line.
  - verified bytes whose arrays do not fit the model being restored (another config, a tokenizer with another
    vocabulary): *incompatible*. Nothing is moved; `IncompatibleCheckpoint` names the arrays that differ.
"""

import contextlib
import errno
import glob
import hashlib
import json
import logging
import os
import re
import shutil
import threading

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from vqgen.errors import IncompatibleCheckpoint, Refusal, SaveFailed
from vqgen.train import writers

DIGEST = "vqgen_digest"  # file names vqgen_digest.process_<i>.json (older vqgen wrote one per process)
# The step's own metadata (timestamps, item names), which Orbax rewrites when it commits the step, after the digest;
# a corrupt copy fails Orbax's read instead.
UNDIGESTED = ("_CHECKPOINT_METADATA", "commit_success.txt")
CONFIG_ITEM = "config"  # <step>/config/metadata: the JSON config of the run that wrote the step
# Orbax writes a replicated array in slices, one per replica ("replica-parallel"); each slice is a jitted
# `slice_in_dim`, compiled once per array shape, which for small arrays costs far more than the write it spreads:
# the first save of a model of ~150 small arrays on 8 devices took 64 s against 0.1 s unsliced. Arrays whose slice
# per replica would be under 1 MiB are written whole by their first replica.
MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL = 1 << 20


@contextlib.contextmanager
def _quiet_absl():
  """Orbax's warnings about what vqgen asks on purpose stay out of the console (errors still show)."""
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    absl_logger.setLevel(level)


def _register_array_handler() -> None:
  default = ocp.type_handlers.get_type_handler(jax.Array)
  handler = ocp.type_handlers.ArrayHandler(
      min_slice_bytes_for_replica_parallel=MIN_SLICE_BYTES_FOR_REPLICA_PARALLEL,
      array_metadata_store=getattr(default, "_array_metadata_store", None))
  with _quiet_absl():  # (Orbax warns that a handler is replaced: that is the point)
    ocp.type_handlers.register_type_handler(jax.Array, handler, override=True)


_register_array_handler()


def file_digests(step_dir: str, exclude: tuple = UNDIGESTED) -> dict:
  """{relative path: SHA-256} of the files of a checkpoint step, the digests and `exclude` excluded."""
  out = {}
  for folder, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, step_dir)
      if rel.startswith(DIGEST) or rel in exclude:
        continue
      h = hashlib.sha256()
      with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          h.update(block)
      out[rel] = h.hexdigest()
  return out


def verify_step(step_dir: str) -> str | None:
  """What is wrong with the files of a checkpoint step (None: they match their digest). Plain file reads: safe
  before JAX starts."""
  paths = sorted(glob.glob(os.path.join(step_dir, f"{DIGEST}.process_*.json")))
  if not paths:
    return f"it has no digest ({DIGEST}.process_0.json): its save did not finish, or an older vqgen wrote it"
  expected = {}
  for path in paths:
    try:
      with open(path) as f:
        expected.update(json.load(f))
    except (OSError, ValueError) as e:
      return f"its digest {os.path.basename(path)} is unreadable ({e})"
  found = {k: v for k, v in file_digests(step_dir, exclude=()).items() if k in expected}  # (older digests list all)
  missing = sorted(set(expected) - set(found))
  changed = sorted(k for k in found if found[k] != expected[k])
  if missing or changed:
    return (f"{len(missing)} file(s) missing {missing[:3]}, {len(changed)} file(s) changed since the save "
            f"{changed[:3]}")
  return None


def step_folders(directory: str) -> list[int]:
  """The finished steps of a checkpoint folder, oldest first (plain file listing: safe before JAX starts)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit() and os.path.isdir(os.path.join(directory, n)))


def saved_config(directory: str) -> tuple[int, dict] | None:
  """(step, config dict) of the newest verified step of a checkpoint folder that carries its config, or None."""
  for step in reversed(step_folders(directory)):
    path = os.path.join(directory, str(step), CONFIG_ITEM, "metadata")
    if os.path.isfile(path) and verify_step(os.path.join(directory, str(step))) is None:
      try:
        with open(path) as f:
          config = json.load(f)
      except (OSError, ValueError):
        continue
      if isinstance(config, dict):
        return step, config
  return None


def _name(path) -> str:
  """A pytree path as a/b/0, whether its keys are dict keys, attributes or indices."""
  return "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _mismatches(saved, abstract) -> list[str]:
  """The arrays of a checkpoint's metadata tree that the abstract state lacks, adds, or shapes otherwise."""
  flat = lambda tree: {_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}
  a, b = flat(saved), flat(abstract)
  out = [f"{k}: only in the checkpoint {tuple(a[k].shape)}" for k in sorted(set(a) - set(b))]
  out += [f"{k}: not in the checkpoint (model has {tuple(b[k].shape)})" for k in sorted(set(b) - set(a))]
  out += [f"{k}: {tuple(a[k].shape)} {a[k].dtype} in the checkpoint, {tuple(b[k].shape)} {b[k].dtype} now"
          for k in sorted(set(a) & set(b)) if not _fits(a[k], b[k])]
  return out


def _fits(saved, wanted) -> bool:
  """Whether a saved array's metadata fits an abstract array (a typed PRNG key is saved as its raw key data)."""
  if jax.dtypes.issubdtype(wanted.dtype, jax.dtypes.prng_key):
    return tuple(saved.shape[:len(wanted.shape)]) == tuple(wanted.shape)
  return tuple(saved.shape) == tuple(wanted.shape) and str(saved.dtype) == str(wanted.dtype)


class Checkpointer:

  def __init__(self, directory: str, keep: int = 3, read_only: bool = False):
    self.directory = directory
    self._lock = threading.Lock()
    self._pending = None  # the step whose save is in flight (its digest is written before it is committed)
    self._saving = None  # the step of the newest save started (named when a save fails)
    with _quiet_absl():  # (a read-only manager warns that it is read-only: that is the point)
      options = ocp.CheckpointManagerOptions(
          max_to_keep=keep, create=not read_only, read_only=read_only,
          async_options=ocp.AsyncOptions(post_finalization_callback=self._digest))
      self.manager = ocp.CheckpointManager(directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def save(self, step: int, state, data_iterator=None, config: dict | None = None) -> None:
    """Starts an asynchronous save of `step` (with the run's `config` as JSON); it ends with its digest."""
    self.wait()  # one save in flight: the digest callback knows which step it finishes
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    if config is not None:
      items[CONFIG_ITEM] = ocp.args.JsonSave(config)
    with self._lock:
      self._pending = self._saving = step
    with self._failures():
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  @contextlib.contextmanager
  def _failures(self):
    """Turns a failed write (disk full, no permission, ...) into SaveFailed naming the step and the fix."""
    try:
      yield
    except (IncompatibleCheckpoint, SaveFailed):
      raise
    except Exception as e:  # pylint: disable=broad-except  (Orbax wraps OSErrors in several types)
      text = str(e).replace(self.directory, "<checkpoints>").strip()
      cause = text.splitlines()[0][:240] if text else type(e).__name__
      reasons = [os.strerror(n) for n in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG)]
      cause += "".join(f" ... {r}" for r in reasons if r in text and r not in cause)
      steps = [s for s in step_folders(self.directory) if s != self._saving]
      raise SaveFailed(
          f"The checkpoint of step {self._saving} could not be written to {self.directory} ({type(e).__name__}: "
          f"{cause}); training stopped there. The newest complete checkpoint is "
          f"{f'step {steps[-1]}' if steps else 'none'}. Free disk space or fix the folder's permissions, then "
          "run the same command to resume.") from e

  def check(self) -> None:
    """Raises SaveFailed when the save in flight has failed (called every step: stop at the first failure)."""
    with self._failures():
      self.manager.check_for_errors()

  def _digest(self) -> None:
    """Orbax's post-finalization callback (process 0, once every process has written): the digest of the step,
    written into its temporary folder just before that is renamed to the step (or into the step itself on file
    systems Orbax writes in place)."""
    with self._lock:
      step, self._pending = self._pending, None
    if step is None:
      return
    final = self.step_dir(step)
    candidates = sorted(glob.glob(f"{final}.orbax-checkpoint-tmp*")) + [final]
    folder = next((c for c in candidates if os.path.isdir(c)), None)
    if folder is None:
      logging.error("Checkpoint step %d: no folder to write its digest into (%s).", step, candidates)
      return
    digests = file_digests(folder)
    path = os.path.join(folder, f"{DIGEST}.process_0.json")
    with open(path + ".tmp", "w") as f:
      json.dump(digests, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)

  def verify(self, step: int) -> str | None:
    """What is wrong with the files of `step` (None: they match their digest)."""
    return verify_step(self.step_dir(step))

  def _check_fits(self, step: int, abstract_state) -> None:
    """Raises IncompatibleCheckpoint when the (verified) step's arrays do not fit `abstract_state`; an unreadable
    metadata file raises what Orbax raises (the step is then unusable)."""
    saved = ocp.StandardCheckpointHandler().metadata(epath.Path(self.step_dir(step)) / "state")
    tree = getattr(saved, "tree", saved)
    if tree is None:
      return  # no metadata to compare: Orbax's restore checks what it can
    wrong = _mismatches(tree, abstract_state)
    if wrong:
      config = os.path.join(self.step_dir(step), CONFIG_ITEM, "metadata")
      raise IncompatibleCheckpoint(
          f"Checkpoint step {step} in {self.directory} was written by another model: {len(wrong)} array(s) differ "
          f"({'; '.join(wrong[:4])}{'; ...' if len(wrong) > 4 else ''}). Its config is in {config}. Nothing was "
          "moved or changed: run with that config, or start a new --workdir for this one.")

  def restore(self, abstract_state, data_iterator=None, step: int | None = None, set_aside: bool = False):
    """Restores into `abstract_state`'s shapes and shardings (and `data_iterator` in place).

    Returns (state, step), or (None, None) when there is no checkpoint. With step=None the newest verified and
    readable checkpoint is used; `set_aside` moves the unusable newer ones out of the checkpoint folder.
    Raises IncompatibleCheckpoint (moving nothing) for a verified step that does not fit the model.
    """
    if step is not None and step not in self.all_steps():
      raise Refusal(f"Checkpoint step {step} is not in {self.directory} (it holds steps {self.all_steps()}).")
    steps = [step] if step is not None else list(reversed(self.all_steps()))
    errors = []
    for s in steps:
      problem = self.verify(s)
      if problem is None:
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
          items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        try:
          self._check_fits(s, abstract_state)
          restored = self.manager.restore(s, args=ocp.args.Composite(**items))
          if errors:
            writers.say(f"Restored checkpoint step {s} of {self.directory} (newer steps are unusable).")
          return restored["state"], s
        except IncompatibleCheckpoint:
          raise
        except Exception as e:  # Orbax raises many types for unreadable files.  pylint: disable=broad-except
          problem = f"{type(e).__name__}: {str(e)[:300]}"
      logging.info("Checkpoint step %d in %s is unusable (%s).", s, self.directory, problem)
      errors.append(f"step {s}: {problem}")
      if set_aside:
        self._set_aside(s, problem)
      else:
        writers.say(f"Checkpoint step {s} of {self.directory} is unusable ({problem}); trying an older one.")
    if errors:
      advice = (f"They were moved to {self.directory.rstrip('/')}_unusable (nothing deleted); run again to train "
                "from step 0" if set_aside else "Restore the files, or train the run again")
      raise Refusal(f"No checkpoint in {self.directory} can be used ({'; '.join(errors)}). {advice}.")
    return None, None

  def _set_aside(self, step: int, problem: str) -> None:
    """Moves an unusable step to <checkpoints>_unusable/<step> (process 0) and forgets it."""
    if jax.process_index() == 0:
      base = target = os.path.join(self.directory.rstrip("/") + "_unusable", str(step))
      copies = 0
      while os.path.exists(target):  # an earlier copy of the same step stays too
        copies += 1
        target = f"{base}.{copies}"
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(self.step_dir(step), target)
      writers.say(f"Checkpoint step {step} is unusable ({problem}): moved to {target} (kept for inspection).")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")  # every process sees the move
    self.manager.reload()

  def wait(self) -> None:
    """Blocks until the save in flight is committed, digest included (SaveFailed if it failed)."""
    with self._failures():
      self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def abstract_with_shardings(tree, shardings):
  """ShapeDtypeStructs of `tree` (arrays or abstract values) carrying the given shardings."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
