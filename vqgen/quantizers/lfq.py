"""Lookup-Free Quantization (MAGVIT-v2, Yu et al. 2023, arXiv 2310.05737), and its spherical form used by BSQ.

With d = log2(K) channels, each channel is one bit: q_i = sign(z_i) (0 -> -1), straight-through. The implicit
codebook is {-1, +1}^d; an index packs the bits (1 for +1) in an explicit `bit_order`: 'msb' (first channel most
significant: vector-quantize-pytorch, BSQ) or 'lsb' (first channel least significant: MAGVIT, Open-MAGVIT2).

Training adds (MAGVIT-v2 eq. 5) entropy_weight * (sample_weight * mean_n H(p_n) - codebook_weight * H(E_n p_n))
with p_n = softmax over the 2^d codes of -inv_temperature * ||z_n - c||^2 (see entropy.py for the exact,
memory-bounded and grouped modes), and commitment_weight * mean ||z - sg(q)||^2. MAGVIT-v2 guidance: entropy 0.1,
commitment 0.25.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.quantizers.base import QuantizerOutput, batch_metrics
from vqgen.quantizers.entropy import entropy_loss

BIT_ORDERS = ("msb", "lsb")
ENTROPY_MODES = ("exact", "grouped")


class LFQ(nnx.Module):
  """LFQ over the last axis of z. `dim` != log2(codebook_size) adds linear in/out projections (needs rngs)."""

  def __init__(self, codebook_size: int, *, dim: int | None = None, entropy_weight: float = 0.1,
               commitment_weight: float = 0.25, sample_weight: float = 1.0, codebook_entropy_weight: float = 1.0,
               inv_temperature: float = 100.0, entropy_mode: str = "exact", group_size: int = 1,
               chunk: int = 4096, bit_order: str = "msb", spherical: bool = False, rngs: nnx.Rngs | None = None):
    bits = int(round(math.log2(codebook_size))) if codebook_size >= 2 else 0
    if codebook_size < 2 or 2**bits != codebook_size:
      raise ValueError(f"LFQ codebook_size must be a power of two >= 2 (one channel per bit), got {codebook_size}.")
    if bits > 30:
      raise ValueError(f"LFQ with {bits} bits exceeds the int32 index range (at most 30 bits here).")
    if bit_order not in BIT_ORDERS:
      raise ValueError(f"bit_order must be one of {BIT_ORDERS}, got {bit_order!r}.")
    if entropy_mode not in ENTROPY_MODES:
      raise ValueError(f"entropy_mode must be one of {ENTROPY_MODES}, got {entropy_mode!r}.")
    if group_size < 1 or bits % group_size:
      raise ValueError(f"group_size={group_size} must divide the {bits} bits of a {codebook_size}-code LFQ.")
    if chunk < 1 or chunk & (chunk - 1):
      raise ValueError(f"chunk must be a power of two, got {chunk}.")
    dim = dim or bits
    if dim != bits and rngs is None:
      raise ValueError(f"LFQ with dim={dim} != log2(codebook_size)={bits} projects in and out: pass rngs=.")
    self.codebook_size, self.bits, self.dim = codebook_size, bits, dim
    self.entropy_weight, self.commitment_weight = entropy_weight, commitment_weight
    self.sample_weight, self.codebook_entropy_weight = sample_weight, codebook_entropy_weight
    self.inv_temperature, self.entropy_mode, self.group_size, self.chunk = (inv_temperature, entropy_mode,
                                                                              group_size, chunk)
    self.bit_order, self.spherical = bit_order, spherical
    self.project_in = nnx.Linear(dim, bits, rngs=rngs) if dim != bits else None
    self.project_out = nnx.Linear(bits, dim, rngs=rngs) if dim != bits else None

  @property
  def code_scale(self) -> float:
    """Code magnitude per channel: 1, or 1/sqrt(d) on the unit sphere (BSQ)."""
    return 1.0 / math.sqrt(self.bits) if self.spherical else 1.0

  def _weights(self) -> jax.Array:
    """Bit weights of the index, int32 [d]."""
    powers = jnp.arange(self.bits, dtype=jnp.int32)
    return (1 << (self.bits - 1 - powers)) if self.bit_order == "msb" else (1 << powers)

  def codes_to_indices(self, codes: jax.Array) -> jax.Array:
    """Codes [..., d] (signs, any positive scale) -> int32 indices [...]."""
    return jnp.sum(jnp.where(codes > 0, self._weights(), 0), -1, dtype=jnp.int32)

  def indices_to_codes(self, indices: jax.Array) -> jax.Array:
    """Int indices [...] -> codes [..., dim] (projected out when dim != d)."""
    bits = (indices.astype(jnp.int32)[..., None] & self._weights()) > 0
    codes = jnp.where(bits, self.code_scale, -self.code_scale).astype(jnp.float32)
    return self.project_out(codes) if self.project_out is not None else codes

  def latent(self, z: jax.Array) -> jax.Array:
    """The d-channel latent that is quantized: projected in, and l2-normalised when spherical."""
    x = z.astype(jnp.float32)
    if self.project_in is not None:
      x = self.project_in(x)
    if self.spherical:
      x = x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, -1, keepdims=True), 1e-12))
    return x

  def entropy_scale(self) -> float:
    """s in p = softmax(s z.c) over +-1 codes: -tau ||z - a c||^2 = 2 tau a z.c + const for codes of scale a."""
    return 2.0 * self.inv_temperature * self.code_scale

  def entropy_factor(self) -> jax.Array | float:
    return 1.0

  def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
    if z.shape[-1] != self.dim:
      raise ValueError(f"LFQ(dim={self.dim}) expects {self.dim} channels last, got shape {z.shape}.")
    x = self.latent(z)
    q = jnp.where(x > 0, self.code_scale, -self.code_scale)
    quantized = x + jax.lax.stop_gradient(q - x)
    indices = self.codes_to_indices(q)
    losses, metrics = {}, batch_metrics(indices, self.codebook_size)
    if self.commitment_weight:
      losses["commitment"] = self.commitment_weight * jnp.mean(jnp.square(x - jax.lax.stop_gradient(q)))
    if train and self.entropy_weight:
      loss, parts = entropy_loss(x.reshape(-1, self.bits), scale=self.entropy_scale(), mode=self.entropy_mode,
                                 group_size=self.group_size, sample_weight=self.sample_weight,
                                 codebook_weight=self.codebook_entropy_weight, chunk=self.chunk)
      losses["entropy"] = self.entropy_weight * self.entropy_factor() * loss
      metrics.update(parts)
    if self.project_out is not None:
      quantized = self.project_out(quantized)
    return QuantizerOutput(quantized, indices, losses, metrics)

