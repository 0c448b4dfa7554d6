"""Finite Scalar Quantization (Mentzer et al. 2023, "FSQ: VQ-VAE made simple", arXiv 2309.15505).

Follows the paper's reference notebook (google-research `fsq/fsq.ipynb`) exactly. Per channel i with L_i levels:

  half_i  = (L_i - 1)(1 - eps) / 2                      eps = 1e-3
  offset_i = 0.5 if L_i is even else 0
  shift_i  = tan(offset_i / half_i)
  bound(z) = tanh(z + shift) * half - offset                           (paper Sec. 3, "bounding function f")
  q(z)     = round_ste(bound(z)) / (L // 2)                            (codes in [-1, 1])

An index packs the level indices k_i = q_i * (L_i // 2) + L_i // 2 in mixed radix with the first channel least
significant: index = sum_i k_i * basis_i, basis = cumprod([1, L_1, ..., L_{d-1}]). The codebook is implicit: all
prod(L) codes are reachable and no auxiliary loss is needed. Quantizer math runs in float32 and index arithmetic
in int32 whatever the input dtype (under bfloat16 a peer library lost half its codes).

`symmetric=True` is the symmetric variant (arXiv 2411.19842): for even L the reference grid is lopsided
(L = 8: -1, -0.75, ..., 0.75); here level k of L sits at code 2k/(L-1) - 1, symmetric about 0 for every L, with
k = round((tanh(z)(1 - eps) + 1)(L - 1)/2). For odd L both variants give the same grid.

`rotation=True` quantizes in a fixed random orthonormal basis (vector-quantize-pytorch's orthogonal_rotation,
after the incoherence processing of QuIP, arXiv 2307.13304): with R a Haar-random orthogonal d x d matrix drawn
once at initialisation and never trained, q(z) = FSQ(z R) R^T, the index that of FSQ(z R). Every channel of the
rotated latent mixes all the encoder's channels, so no channel's levels go unused because its encoder output
collapsed. Meant for equal levels on every channel (the grid is rotated as a whole).

`noise_dropout=p` is TAAE's training-time bottleneck (arXiv 2411.19842, Sec. 3.2; its released DitheredFSQ,
p = 0.5): each training example (leading axis) keeps its bounded latent unrounded with probability p, else rounds
it; then, with probability 1 - p, the example's output is instead the bounded latent plus uniform noise one level
step wide, U(-1/2, 1/2) * 2 / (L - 1) in code units (the distribution of the rounding error). With p = 0.5:
noise 1/2, unrounded 1/4, rounded 1/4 of examples. The decoder learns from codes and their noisy neighbours alike,
and the gradient reaches the encoder undistorted for the unrounded and noised examples. Indices are always those of
the rounded grid; evaluation rounds every example.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.quantizers.base import QuantizerOutput, batch_metrics


class Rotation(nnx.Variable):
  """A fixed (never trained) orthogonal matrix of FSQ's rotated variant."""


def haar_orthogonal(key: jax.Array, d: int) -> jax.Array:
  """A d x d orthogonal matrix distributed by the Haar measure: Q of the QR of a Gaussian matrix, each column's sign
  set by R's diagonal (Mezzadri 2007; plain QR is not uniform)."""
  q, r = jnp.linalg.qr(jax.random.normal(key, (d, d)))
  return q * jnp.sign(jnp.diagonal(r))[None, :]

# The paper's Table 1 (and appendix): recommended levels for a target codebook size 2^k.
RECOMMENDED_LEVELS = {
    4: (5, 3), 6: (8, 8), 8: (8, 6, 5), 9: (8, 8, 8), 10: (8, 5, 5, 5), 11: (8, 8, 6, 5),
    12: (7, 5, 5, 5, 5), 14: (8, 8, 8, 6, 5), 16: (8, 8, 8, 5, 5, 5),
}
_MAX_CODEBOOK_SIZE = 2**31 - 1  # indices are int32


def round_ste(x: jax.Array) -> jax.Array:
  """Round with a straight-through gradient (identity Jacobian)."""
  return x + jax.lax.stop_gradient(jnp.round(x) - x)


class FSQ(nnx.Module):
  """FSQ over the last axis of z; `len(levels)` channels. No parameters; `rngs` draws the rotation when
  rotation=True and is otherwise unused."""

  def __init__(self, levels: Sequence[int], eps: float = 1e-3, symmetric: bool = False, rotation: bool = False,
               noise_dropout: float = 0.0, rngs: nnx.Rngs | None = None):
    levels = tuple(int(l) for l in levels)
    if not levels:
      raise ValueError("FSQ levels must name at least one channel, e.g. levels=(8, 5, 5, 5).")
    if any(l < 2 for l in levels):
      raise ValueError(f"FSQ levels must all be >= 2 (got {levels}); the paper recommends >= 5 per channel.")
    size = math.prod(levels)
    if size > _MAX_CODEBOOK_SIZE:
      raise ValueError(f"FSQ codebook size prod{levels} = {size} exceeds 2^31 - 1, the int32 index range.")
    if not 0.0 <= eps < 1.0:
      raise ValueError(f"FSQ eps must be in [0, 1), got {eps}.")
    self.levels = levels
    self.eps = float(eps)
    self.symmetric = bool(symmetric)
    self.codebook_size = size
    self.dim = len(levels)
    if rotation and rngs is None:
      raise ValueError("FSQ rotation=True draws its rotation at initialisation: pass rngs.")
    self.rotation = Rotation(haar_orthogonal(rngs.params(), self.dim)) if rotation else None
    if not 0.0 <= noise_dropout < 1.0:
      raise ValueError(f"FSQ noise_dropout must be in [0, 1) (TAAE uses 0.5; 0 is off), got {noise_dropout}.")
    if noise_dropout and rngs is None:
      raise ValueError("FSQ noise_dropout draws masks and noise in training: pass rngs.")
    self.noise_dropout = float(noise_dropout)
    self.rngs = rngs if noise_dropout else None

  # Constants are derived from the static `levels` tuple (NNX modules hold no raw arrays).
  @property
  def _levels(self) -> np.ndarray:
    return np.asarray(self.levels, np.int32)

  @property
  def _basis(self) -> np.ndarray:
    return np.concatenate([[1], np.cumprod(self._levels[:-1])]).astype(np.int32)

  @property
  def _half_width(self) -> np.ndarray:
    """Codes per unit of level index: code = (k - center) / half_width."""
    if self.symmetric:
      return ((self._levels - 1) / 2).astype(np.float32)
    return (self._levels // 2).astype(np.float32)

  @property
  def _center(self) -> np.ndarray:
    return self._half_width  # L // 2 (reference) or (L - 1) / 2 (symmetric)

  def bound(self, z: jax.Array) -> jax.Array:
    """f(z) = tanh(z + shift) * half - offset: maps R to (-L/2, L/2) shifted so rounding gives L values."""
    levels = self._levels.astype(np.float32)
    half = (levels - 1) * (1 - self.eps) / 2
    offset = np.where(self._levels % 2 == 1, 0.0, 0.5).astype(np.float32)
    shift = np.tan(offset / half).astype(np.float32)
    return jnp.tanh(z + shift) * half - offset

  def continuous(self, z: jax.Array) -> jax.Array:
    """The bounded latent in code units, before rounding (rounding it gives the codes)."""
    z = z.astype(jnp.float32)
    if self.symmetric:
      return jnp.tanh(z) * (1 - self.eps)
    return self.bound(z) / self._half_width

  def quantize(self, z: jax.Array) -> jax.Array:
    """Codes in [-1, 1] per channel, straight-through in z."""
    u = self.continuous(z) * self._half_width + (self._center if self.symmetric else 0.0)
    return (round_ste(u) - (self._center if self.symmetric else 0.0)) / self._half_width

  def noise_dropped(self, z: jax.Array, grid: jax.Array) -> jax.Array:
    """TAAE's training output (module docstring) from the latent z and its rounded grid, masks per example."""
    u = self.continuous(z)
    keep_key, noise_key, uniform_key = jax.random.split(self.rngs(), 3)
    mask_shape = z.shape[:1] + (1,) * (z.ndim - 1)
    out = jnp.where(jax.random.bernoulli(keep_key, self.noise_dropout, mask_shape), u, grid)
    noise = (jax.random.uniform(uniform_key, z.shape) - 0.5) / self._half_width
    return jnp.where(jax.random.bernoulli(noise_key, self.noise_dropout, mask_shape), out, u + noise)

  def codes_to_indices(self, codes: jax.Array) -> jax.Array:
    """Codes [..., d] as `indices_to_codes` returns them -> int32 indices [...]."""
    self._check_dim(codes)
    codes = codes.astype(jnp.float32)
    return self._grid_indices(codes @ self.rotation[...] if self.rotation is not None else codes)

  def _grid_indices(self, grid: jax.Array) -> jax.Array:
    """Points of the (unrotated) grid [..., d] -> int32 indices [...]."""
    k = jnp.round(grid * self._half_width + self._center).astype(jnp.int32)
    return jnp.sum(k * self._basis, axis=-1, dtype=jnp.int32)

  def indices_to_codes(self, indices: jax.Array) -> jax.Array:
    """Int indices [...] -> float32 codes [..., d]."""
    k = (indices.astype(jnp.int32)[..., None] // self._basis) % self._levels
    codes = (k.astype(jnp.float32) - self._center) / self._half_width
    return codes @ self.rotation[...].T if self.rotation is not None else codes

  def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
    self._check_dim(z)
    rotation = self.rotation[...] if self.rotation is not None else None
    z = z if rotation is None else z.astype(jnp.float32) @ rotation
    grid = self.quantize(z)
    indices = self._grid_indices(jax.lax.stop_gradient(grid))
    if train and self.noise_dropout:
      grid = self.noise_dropped(z, grid)
    quantized = grid if rotation is None else grid @ rotation.T
    return QuantizerOutput(quantized, indices, {}, batch_metrics(indices, self.codebook_size))

  def _check_dim(self, x):
    if x.shape[-1] != self.dim:
      raise ValueError(f"FSQ with levels {self.levels} expects {self.dim} channels last, got shape {x.shape}.")
