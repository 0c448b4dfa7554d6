"""The optax optimizer: global-norm clipping -> AdamW on a linear-warmup cosine schedule."""

import jax
import optax


def learning_rate_schedule(learning_rate: float, warmup_steps: int, total_steps: int,
                           end_factor: float) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
      decay_steps=max(total_steps, warmup_steps + 1), end_value=learning_rate * end_factor)


def build_optimizer(c, total_steps: int) -> optax.GradientTransformation:
  """`c` is config.optimizer. Weight decay applies to matrices and kernels only (not biases or norms)."""
  schedule = learning_rate_schedule(c.learning_rate, c.warmup_steps, total_steps, c.end_learning_rate_factor)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  chain = [optax.clip_by_global_norm(c.grad_clip_norm)] if c.grad_clip_norm > 0 else []
  chain.append(optax.adamw(schedule, b1=c.b1, b2=c.b2, weight_decay=c.weight_decay, mask=decay_mask))
  return optax.chain(*chain)
