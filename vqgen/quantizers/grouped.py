"""Grouped quantization: channels split into G equal groups, each quantized independently; indices [..., G].

`make_group()` builds the quantizer of one group (of `dim` channels); the whole takes G * dim channels, e.g.
`Grouped(lambda: FSQ((8, 5, 5, 5)), groups=2)` quantizes 8 channels as two 1000-code indices. With VQ groups this
is multi-head VQ with a codebook per head, and FQGAN's factorized sub-codebooks (Bai et al. 2024, arXiv
2411.16681) with its disentanglement regulariser (`disentanglement_weight`, the paper's 0.1): in training,
w * mean over pairs of groups i < j of mean_n cos^2(q_i,n, q_j,n), the squared cosine between the codes two
sub-codebooks give the same position, so that they learn complementary features.
"""

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.quantizers.base import QuantizerOutput, l2_normalize, level_metrics, sum_losses


class Grouped(nnx.Module):

  def __init__(self, make_group: Callable[[], nnx.Module], groups: int, *, disentanglement_weight: float = 0.0,
               rngs: nnx.Rngs | None = None):
    del rngs  # randomness, if any, is the groups' own
    if groups < 1:
      raise ValueError(f"Grouped needs groups >= 1, got {groups}.")
    if disentanglement_weight < 0 or (disentanglement_weight > 0 and groups < 2):
      raise ValueError(f"disentanglement_weight ({disentanglement_weight}) must be >= 0 and acts between groups: "
                       f"it needs groups >= 2 (got {groups}).")
    self.disentanglement_weight = disentanglement_weight
    self.groups_ = nnx.List([make_group() for _ in range(groups)])
    self.groups, self.codebook_size = groups, self.groups_[0].codebook_size
    self.dim = groups * self.groups_[0].dim

  def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
    parts = jnp.split(z, self.groups, axis=-1)
    outputs = [q(p, train=train) for q, p in zip(self.groups_, parts)]
    indices = jnp.stack([o.indices for o in outputs], -1)
    losses = sum_losses(outputs)
    if train and self.disentanglement_weight:
      losses["disentanglement"] = self.disentanglement_weight * disentanglement_loss([o.quantized for o in outputs])
    return QuantizerOutput(jnp.concatenate([o.quantized for o in outputs], -1), indices, losses,
                           level_metrics(indices, self.codebook_size, "group"))

  def indices_to_codes(self, indices: jax.Array) -> jax.Array:
    return jnp.concatenate([q.indices_to_codes(indices[..., g]) for g, q in enumerate(self.groups_)], -1)

  def codes_to_indices(self, codes: jax.Array) -> jax.Array:
    parts = jnp.split(codes, self.groups, axis=-1)
    return jnp.stack([q.codes_to_indices(p) for q, p in zip(self.groups_, parts)], -1)


def disentanglement_loss(parts: list[jax.Array]) -> jax.Array:
  """FQGAN's regulariser: the mean over pairs i < j of mean_n cos^2(parts[i]_n, parts[j]_n), parts [..., d] each."""
  unit = [l2_normalize(p) for p in parts]
  pairs = [(i, j) for i in range(len(unit)) for j in range(i + 1, len(unit))]
  return sum(jnp.mean(jnp.square(jnp.sum(unit[i] * unit[j], -1))) for i, j in pairs) / len(pairs)
