"""Residual quantization (RQ-VAE, Lee et al. 2022) with SoundStream's quantizer dropout.

r_0 = z; for d = 1..D: q_d = Q_d(r_{d-1} / s_d) * s_d, r_d = r_{d-1} - sg(q_d); output sum_d q_d, indices
[..., D]. The commitment loss is taken on the cumulative sums (RQ-VAE eq. 6):
sum_d beta * mean ||z - sg(q_1 + ... + q_d)||^2; the levels' other losses (codebook, entropy) are summed.
s_d = 1 except for FSQ levels, where s_d = (L - 1)^-(d-1) per channel shrinks the grid with the residual
(residual FSQ). `make_level()` builds one level (`shared_codebook` calls it once and uses that quantizer at every
depth), e.g. `Residual(lambda: VQ(dim=64, codebook_size=1024, rngs=rngs), num_quantizers=8)`.
`quantizer_dropout` p: in training, with probability p an example keeps only its first n ~ U{1..D} levels in the
output (variable bitrate); indices are still those of every level, in range.
"""

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.quantizers.base import QuantizerOutput, level_metrics, sum_losses
from vqgen.quantizers.fsq import FSQ


class Residual(nnx.Module):

  def __init__(self, make_level: Callable[[], nnx.Module], num_quantizers: int, *, shared_codebook: bool = False,
               quantizer_dropout: float = 0.0, rngs: nnx.Rngs | None = None):
    if num_quantizers < 1:
      raise ValueError(f"Residual needs num_quantizers >= 1, got {num_quantizers}.")
    if not 0.0 <= quantizer_dropout < 1.0:
      raise ValueError(f"quantizer_dropout must be in [0, 1), got {quantizer_dropout}.")
    if quantizer_dropout > 0 and rngs is None:
      raise ValueError("quantizer_dropout draws random depths: pass rngs=.")
    first = make_level()
    if shared_codebook and isinstance(first, FSQ):
      raise ValueError("FSQ has no learned codebook to share; use shared_codebook=False.")
    levels = [first] * num_quantizers if shared_codebook else \
        [first] + [make_level() for _ in range(num_quantizers - 1)]
    self.levels = nnx.List(levels)
    self.num_quantizers, self.quantizer_dropout = num_quantizers, quantizer_dropout
    self.dim, self.codebook_size = first.dim, first.codebook_size
    self.rngs = rngs if quantizer_dropout > 0 else None
    self.is_fsq = isinstance(first, FSQ)
    if self.is_fsq:
      base = np.asarray(first.levels, np.float32) - 1.0
      self._scales = tuple(tuple(float(v) for v in base ** -d) for d in range(num_quantizers))
    else:
      self._scales = tuple((1.0,) for _ in range(num_quantizers))

  def scale(self, depth: int) -> jax.Array:
    return jnp.asarray(self._scales[depth], jnp.float32)

  def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
    z = z.astype(jnp.float32)
    residual, total, outputs, cumulative = z, jnp.zeros_like(z), [], []
    for d, level in enumerate(self.levels):
      out = level(residual / self.scale(d), train=train)
      q = out.quantized * self.scale(d)
      outputs.append(out)
      total = total + q
      cumulative.append(total)
      residual = residual - jax.lax.stop_gradient(q)
    indices = jnp.stack([o.indices for o in outputs], -1)
    losses = sum_losses([o._replace(losses={k: v for k, v in o.losses.items() if k != "commitment"})
                          for o in outputs])
    beta = getattr(self.levels[0], "commitment_weight", 0.0)
    if beta:
      losses["commitment"] = sum(beta * jnp.mean(jnp.square(z - jax.lax.stop_gradient(c))) for c in cumulative)
    quantized = total
    if train and self.quantizer_dropout > 0:
      batch = z.shape[0]
      keep_all = jax.random.uniform(self.rngs(), (batch,)) >= self.quantizer_dropout
      depth = jax.random.randint(self.rngs(), (batch,), 1, self.num_quantizers + 1)
      depth = jnp.where(keep_all, self.num_quantizers, depth)
      partial = jnp.stack(cumulative, 0)  # [D, B, ...]
      pick = jax.nn.one_hot(depth - 1, self.num_quantizers, dtype=z.dtype).T  # [D, B]
      quantized = jnp.einsum("db,db...->b...", pick, partial)
    return QuantizerOutput(quantized, indices, losses, level_metrics(indices, self.codebook_size, "depth"))

  def indices_to_codes(self, indices: jax.Array) -> jax.Array:
    """Indices [..., D] -> the sum of the levels' codes [..., dim]."""
    return sum(level.indices_to_codes(indices[..., d]) * self.scale(d) for d, level in enumerate(self.levels))

  def codes_to_indices(self, codes: jax.Array) -> jax.Array:
    """Greedy residual decomposition of codes [..., dim] -> indices [..., D]: each level takes its nearest code
    (FSQ: nearest grid point, clipped to its range) of what the levels before left. For sums of level codes,
    `indices_to_codes` of the result reproduces the codes; the indices themselves need not be unique (residual
    FSQ digits are redundant)."""
    residual, out = codes.astype(jnp.float32), []
    for d, level in enumerate(self.levels):
      x = residual / self.scale(d)
      idx = level.codes_to_indices(jnp.clip(x, -1.0, 1.0) if self.is_fsq else x)
      out.append(idx)
      residual = residual - level.indices_to_codes(idx) * self.scale(d)
    return jnp.stack(out, -1)
