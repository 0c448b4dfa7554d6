"""The optax optimizers: per parameter group, global-norm clipping -> AdamW on a linear-warmup cosine schedule.

A stage trains one group (every parameter, `config.optimizer`) unless it declares several with `param_groups()`
(a GAN tokenizer: the generator under `config.optimizer`, the discriminator under its own section). A group owns
top-level keys of the model's parameter dict; the groups are combined with `optax.multi_transform`, so every
group is updated in the same step with its own schedule, clipping and Adam moments.
"""

import dataclasses
from typing import Any

import jax
import optax


@dataclasses.dataclass(frozen=True)
class ParamGroup:
  """`optimizer`: a section with the keys of config.optimizer. `keys`: the top-level parameter keys it trains
  (None: all the keys no other group names)."""
  optimizer: Any
  keys: tuple[str, ...] | None = None


def param_groups(stage, config) -> dict[str, ParamGroup]:
  """The stage's groups (`stage.param_groups()`, when it declares any), else one group of every parameter under
  config.optimizer."""
  declared = getattr(stage, "param_groups", None)
  return (declared() if declared is not None else None) or {"model": ParamGroup(config.optimizer)}


def group_of_keys(groups: dict[str, ParamGroup], top_keys) -> dict[str, str]:
  """{top-level parameter key: group name}; every key belongs to exactly one group."""
  named = {k: name for name, g in groups.items() if g.keys is not None for k in g.keys}
  default = [name for name, g in groups.items() if g.keys is None]
  if len(default) > 1:
    raise ValueError(f"At most one parameter group may take the remaining keys, got {default}.")
  out = {}
  for key in top_keys:
    if key not in named and not default:
      raise ValueError(f"Parameters {key!r} belong to no parameter group ({ {n: g.keys for n, g in groups.items()} }).")
    out[key] = named.get(key, default[0] if default else None)
  return out


def learning_rate_schedule(learning_rate: float, warmup_steps: int, total_steps: int,
                           end_factor: float) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=learning_rate * end_factor)


def schedule_of(c, total_steps: int) -> optax.Schedule:
  """The learning-rate schedule of an optimizer section `c`."""
  return learning_rate_schedule(c.learning_rate, c.warmup_steps, total_steps, c.end_learning_rate_factor)


def adamw(c, total_steps: int) -> optax.GradientTransformation:
  """One section's optimizer. Weight decay applies to matrices and kernels only (not biases or norms)."""
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  chain = [optax.clip_by_global_norm(c.grad_clip_norm)] if c.grad_clip_norm > 0 else []
  chain.append(optax.adamw(schedule_of(c, total_steps), b1=c.b1, b2=c.b2, weight_decay=c.weight_decay,
                           mask=decay_mask))
  return optax.chain(*chain)


def build_optimizer(groups: dict[str, ParamGroup], total_steps: int) -> optax.GradientTransformation:
  """One group: its optimizer as it is. Several: `optax.multi_transform` over the groups' top-level keys (each
  group clips its own gradient norm)."""
  if len(groups) == 1 and next(iter(groups.values())).keys is None:
    return adamw(next(iter(groups.values())).optimizer, total_steps)

  def labels(params):
    owner = group_of_keys(groups, params)
    return {k: jax.tree.map(lambda _, g=owner[k]: g, v) for k, v in params.items()}

  return optax.multi_transform({name: adamw(g.optimizer, total_steps) for name, g in groups.items()}, labels)
