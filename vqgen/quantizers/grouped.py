"""Grouped quantization: channels split into G equal groups, each quantized independently; indices [..., G].

`make_group()` builds the quantizer of one group (of `dim` channels); the whole takes G * dim channels, e.g.
`Grouped(lambda: FSQ((8, 5, 5, 5)), groups=2)` quantizes 8 channels as two 1000-code indices.
"""

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.quantizers.base import QuantizerOutput, level_metrics, sum_losses


class Grouped(nnx.Module):

  def __init__(self, make_group: Callable[[], nnx.Module], groups: int, *, rngs: nnx.Rngs | None = None):
    del rngs  # randomness, if any, is the groups' own
    if groups < 1:
      raise ValueError(f"Grouped needs groups >= 1, got {groups}.")
    self.groups_ = nnx.List([make_group() for _ in range(groups)])
    self.groups, self.codebook_size = groups, self.groups_[0].codebook_size
    self.dim = groups * self.groups_[0].dim
  def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
    parts = jnp.split(z, self.groups, axis=-1)
    outputs = [q(p, train=train) for q, p in zip(self.groups_, parts)]
    indices = jnp.stack([o.indices for o in outputs], -1)
    return QuantizerOutput(jnp.concatenate([o.quantized for o in outputs], -1), indices, sum_losses(outputs),
                           level_metrics(indices, self.codebook_size, "group"))

  def indices_to_codes(self, indices: jax.Array) -> jax.Array:
    return jnp.concatenate([q.indices_to_codes(indices[..., g]) for g, q in enumerate(self.groups_)], -1)

  def codes_to_indices(self, codes: jax.Array) -> jax.Array:
    parts = jnp.split(codes, self.groups, axis=-1)
    return jnp.stack([q.codes_to_indices(p) for q, p in zip(self.groups_, parts)], -1)
