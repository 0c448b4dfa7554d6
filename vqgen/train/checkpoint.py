"""Orbax checkpoints of the train state together with the Grain data-iterator state.

Both are written in one `CheckpointManager` step, so a run resumed from step k sees exactly the batches an
uninterrupted run would. Restoring takes an abstract state carrying the *current* shardings, so a checkpoint
written on one mesh shape restores onto another. A checkpoint that fails to restore (truncated or corrupt files)
is reported and the next older one is tried.
"""

import logging

import grain
import jax
import orbax.checkpoint as ocp


class Checkpointer:

  def __init__(self, directory: str, keep: int = 3):
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(directory, options=options)
    self.directory = directory

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_iterator=None) -> None:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, abstract_state, data_iterator=None, step: int | None = None):
    """Restores into `abstract_state`'s shapes and shardings (and `data_iterator` in place).

    Returns (state, step), or (None, None) when there is no checkpoint. With step=None the newest readable
    checkpoint is used.
    """
    steps = [step] if step is not None else list(reversed(self.all_steps()))
    errors = []
    for s in steps:
      items = {"state": ocp.args.StandardRestore(abstract_state)}
      if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(**items))
      except Exception as e:  # Orbax raises many types for unreadable files.
        logging.warning("Checkpoint step %d in %s could not be restored (%s: %s); trying an older one.",
                        s, self.directory, type(e).__name__, e)
        errors.append(f"step {s}: {type(e).__name__}: {e}")
        continue
      return restored["state"], s
    if errors:
      raise RuntimeError(f"No checkpoint in {self.directory} could be restored:\n  " + "\n  ".join(errors) +
                         "\nMove the directory away to start afresh, or fix the files.")
    return None, None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def abstract_with_shardings(tree, shardings):
  """ShapeDtypeStructs of `tree` (arrays or abstract values) carrying the given shardings."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
