"""What may change when a run resumes: a workdir's saved config against the config of the command resuming it.

Keys that define the model, the data, the objective or the optimisation must match, or the resumed run would be
a different experiment under the old name. The keys below only say how long to train (the schedule's lengths:
extending a run stretches its cosine), how often to log and save, how to evaluate and sample, and where the
computation runs (a checkpoint restores onto any mesh).
"""

import fnmatch
import json

from vqgen.config.schema import ConfigError

MAY_CHANGE = (
    "train.steps", "optimizer.warmup_steps", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.num_grid_images",
    "train.profile", "data.eval_batch_size", "data.eval_limit", "mesh.*", "sampling.*", "evaluation.*",
)


def _flat(tree, prefix=""):
  for key, value in tree.items():
    if isinstance(value, dict):
      yield from _flat(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def may_change(key: str) -> bool:
  return any(fnmatch.fnmatchcase(key, pattern) for pattern in MAY_CHANGE)


def changes(saved, new) -> tuple[list, list]:
  """(refused, allowed): the (key, saved value, new value) that differ between two configs (ConfigDicts or
  dicts), split by whether a resumed run may change them. Values compare as JSON (tuples equal lists)."""
  normal = lambda c: json.loads(json.dumps(c.to_dict() if hasattr(c, "to_dict") else c, default=str))
  a, b = dict(_flat(normal(saved))), dict(_flat(normal(new)))
  missing = object()
  diff = [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
          if a.get(k, missing) != b.get(k, missing)]
  diff = [(k, "(absent)" if x is missing else x, "(absent)" if y is missing else y) for k, x, y in diff]
  return [d for d in diff if not may_change(d[0])], [d for d in diff if may_change(d[0])]


def check_resume(saved, new, workdir: str) -> list:
  """Raises ConfigError naming every key that differs from the workdir's saved config and may not change on
  resume; returns the (key, saved, new) changes that may."""
  refused, allowed = changes(saved, new)
  if refused:
    lines = "\n".join(f"  {k}: {old!r} in the workdir, {value!r} now" for k, old, value in refused)
    raise ConfigError(
        f"{workdir} holds a run of another config; resuming it would change what defines the run:\n{lines}\n"
        f"Start a new workdir (--workdir=...) for the new config, or drop these changes to resume. Keys that may "
        f"change on resume: {', '.join(MAY_CHANGE)}.")
  return allowed
