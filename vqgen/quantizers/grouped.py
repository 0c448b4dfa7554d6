"""Grouped quantization: channels split into G equal groups, each quantized independently; indices [..., G]."""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.quantizers.base import QuantizerOutput, build_level, level_metrics, sum_losses


class Grouped(nnx.Module):

  def __init__(self, quantizer: str, groups: int, dim: int, *, rngs: nnx.Rngs | None = None,
               **quantizer_kwargs):
    if groups < 1 or dim % groups:
      raise ValueError(f"Grouped: groups={groups} must divide dim={dim}.")
    kwargs = dict(quantizer_kwargs)
    if quantizer != "fsq":
      kwargs["dim"] = dim // groups
    self.groups_ = nnx.List([build_level(quantizer, kwargs, rngs) for _ in range(groups)])
    if self.groups_[0].dim != dim // groups:
      raise ValueError(f"Grouped: each of the {groups} groups gets {dim // groups} channels, but the "
                       f"{quantizer} quantizer takes {self.groups_[0].dim}.")
    self.groups, self.dim, self.codebook_size = groups, dim, self.groups_[0].codebook_size

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
