"""Binary Spherical Quantization (Zhao et al. 2024, arXiv 2406.07548).

Project to L dims, l2-normalise u = v / |v|, quantize q = sign(u) / sqrt(L) (straight-through): every code lies
on the unit sphere, and the quantization error is bounded for any L. Training uses the group-factorised soft
entropy of LFQ (entropy.py, mode 'grouped': exact per-sample term, codebook term as the sum of group marginal
entropies) with p(c | u) proportional to exp(-inv_temperature ||u - c||^2). The entropy weight ramps linearly
from ramp_start x to 1 x over ramp_steps training calls (their configs: x3 -> x1 over 2k steps); commitment 0.
"""

import jax.numpy as jnp
from flax import nnx

from vqgen.quantizers.lfq import LFQ
from vqgen.quantizers.vq import CodebookStat


class BSQ(LFQ):

  def __init__(self, dim: int, num_bits: int, *, entropy_weight: float = 0.1, commitment_weight: float = 0.0,
               inv_temperature: float = 1.0, group_size: int = 9, entropy_mode: str = "grouped",
               ramp_start: float = 3.0, ramp_steps: int = 2000, rngs: nnx.Rngs | None = None, **kwargs):
    if group_size < 1 or num_bits % group_size:
      raise ValueError(f"BSQ group_size={group_size} must divide num_bits={num_bits}.")
    if ramp_start <= 0 or ramp_steps < 0:
      raise ValueError(f"BSQ needs ramp_start > 0 and ramp_steps >= 0, got {ramp_start}, {ramp_steps}.")
    super().__init__(2**num_bits, dim=dim, entropy_weight=entropy_weight, commitment_weight=commitment_weight,
                     inv_temperature=inv_temperature, entropy_mode=entropy_mode, group_size=group_size,
                     spherical=True, rngs=rngs, **kwargs)
    self.ramp_start, self.ramp_steps = ramp_start, ramp_steps
    self.calls = CodebookStat(jnp.zeros((), jnp.int32))

  def entropy_factor(self):
    """ramp_start -> 1 linearly over ramp_steps training calls, then 1."""
    progress = jnp.minimum(self.calls[...] / max(self.ramp_steps, 1), 1.0)
    self.calls[...] = self.calls[...] + 1
    return self.ramp_start + (1.0 - self.ramp_start) * progress
