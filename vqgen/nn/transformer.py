"""The pre-norm transformer shared by every prior and the ViT tokenizer: used bidirectionally (MaskGIT, diffusion,
ViT) or causally (autoregressive), with a static key/value cache for decoding and optional time conditioning by adaLN.

Block (pre-norm, GPT-2 / ViT):  x += gate_a * Attn(modulate(LN(x)));  x += gate_m * MLP(modulate(LN(x)))
where modulate(h) = h * (1 + scale) + shift and (shift, scale, gate) come from a zero-initialised linear map of
the conditioning vector (adaLN-Zero, DiT: Peebles & Xie 2023); without conditioning, gates are 1 and modulate is
the identity. Positions: learned, or fixed 2-D sine-cosine over the code grid (MAE) with a learned vector for the
leading class-token slot.

Parameters carry logical axis names (`embed`, `mlp`, `heads`, `vocab`) mapped to the mesh by config rules.
Dropout takes an explicit key, so a training step stays a pure function of (state, batch, rng).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

POSITIONS = ("learned", "2d")


def dense(din: int, dout: int, axes: tuple, *, rngs: nnx.Rngs, dtype, zero: bool = False, bias: bool = True):
  init = nnx.initializers.zeros_init() if zero else nnx.initializers.xavier_uniform()
  return nnx.Linear(din, dout, use_bias=bias, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                    kernel_init=nnx.with_partitioning(init, axes),
                    bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)))


def layer_norm(width: int, *, rngs: nnx.Rngs, dtype) -> nnx.LayerNorm:
  return nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                       scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",)),
                       bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)))


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0).astype(x.dtype)


def sincos_2d(height: int, width: int, dim: int) -> np.ndarray:
  """Fixed 2-D sine-cosine positions [height * width, dim] (MAE): half the channels encode the row, half the
  column, each as sin/cos of the coordinate at geometrically spaced frequencies 1 / 10000^(2i / (dim / 2))."""
  if dim % 4:
    raise ValueError(f"2-D sine-cosine positions need a width divisible by 4, got {dim}.")
  omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim // 4))
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  parts = [f(c.reshape(-1, 1) * omega[None]) for c in (rows, cols) for f in (np.sin, np.cos)]
  return np.concatenate(parts, 1).astype(np.float32)


class Attention(nnx.Module):
  """Multi-head self-attention; `cache` = (k, v) [B, L_max, H, D_h] buffers written at `index` when decoding."""

  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, dtype):
    if width % heads:
      raise ValueError(f"Transformer width {width} must be divisible by the number of heads {heads}.")
    self.heads, self.head_dim = heads, width // heads
    self.qkv = dense(width, 3 * width, ("embed", "heads"), rngs=rngs, dtype=dtype)
    self.out = dense(width, width, ("heads", "embed"), rngs=rngs, dtype=dtype)

  def __call__(self, x, mask, cache=None, index=None):
    b, n, _ = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
    if cache is not None:  # decoding: write this step's keys/values, attend over the whole (masked) buffer
      k = jax.lax.dynamic_update_slice_in_dim(cache[0], k.astype(cache[0].dtype), index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cache[1], v.astype(cache[1].dtype), index, axis=1)
      cache = (k, v)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / math.sqrt(self.head_dim)
    if mask is not None:
      logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, -1).astype(v.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, n, -1)
    return self.out(out), cache


class Block(nnx.Module):

  def __init__(self, width: int, heads: int, mlp_ratio: int, conditioned: bool, *, rngs: nnx.Rngs, dtype):
    self.norm1 = layer_norm(width, rngs=rngs, dtype=dtype)
    self.attn = Attention(width, heads, rngs=rngs, dtype=dtype)
    self.norm2 = layer_norm(width, rngs=rngs, dtype=dtype)
    self.fc1 = dense(width, mlp_ratio * width, ("embed", "mlp"), rngs=rngs, dtype=dtype)
    self.fc2 = dense(mlp_ratio * width, width, ("mlp", "embed"), rngs=rngs, dtype=dtype)
    # adaLN-Zero: shift, scale, gate for attention and MLP; zero init makes every block the identity at start.
    self.modulation = dense(width, 6 * width, ("embed", "mlp"), rngs=rngs, dtype=dtype, zero=True) \
        if conditioned else None

  def __call__(self, x, mask, cond=None, cache=None, index=None, rate=0.0, key=None):
    if self.modulation is not None:
      mods = jnp.split(self.modulation(nnx.silu(cond))[:, None], 6, axis=-1)
      shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
    else:
      shift_a = scale_a = shift_m = scale_m = 0.0
      gate_a = gate_m = 1.0
    keys = (None, None) if key is None else jax.random.split(key)
    h, cache = self.attn(self.norm1(x) * (1 + scale_a) + shift_a, mask, cache, index)
    x = x + gate_a * dropout(h, rate, keys[0])
    h = self.fc2(nnx.gelu(self.fc1(self.norm2(x) * (1 + scale_m) + shift_m)))
    return x + gate_m * dropout(h, rate, keys[1]), cache


class Transformer(nnx.Module):
  """Embeddings [B, L, width] -> hidden states [B, L, width] (after a final LayerNorm).

  `grid` (h, w) is the code grid; sequences are `prefix` leading slots (the class token) followed by h*w codes
  in raster order. `cond` [B, width] (e.g. a time embedding) modulates every block when `conditioned`.
  """

  def __init__(self, *, width: int, depth: int, heads: int, grid: tuple[int, int], prefix: int = 1,
               mlp_ratio: int = 4, dropout_rate: float = 0.0, positions: str = "learned",
               conditioned: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
    if positions not in POSITIONS:
      raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}.")
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate}.")
    self.width, self.grid, self.prefix, self.dropout_rate = width, tuple(grid), prefix, dropout_rate
    self.length = prefix + grid[0] * grid[1]
    self.dtype = dtype
    init = nnx.initializers.normal(0.02)
    if positions == "learned":
      self.positions = nnx.Param(init(rngs.params(), (self.length, width)))
    else:
      self.positions = nnx.Param(init(rngs.params(), (prefix, width)))  # the class slot; codes get sincos
      self.fixed = nnx.Variable(jnp.asarray(sincos_2d(*grid, width)))
    self.position_kind = positions
    self.blocks = nnx.List([Block(width, heads, mlp_ratio, conditioned, rngs=rngs, dtype=dtype)
                            for _ in range(depth)])
    self.norm = layer_norm(width, rngs=rngs, dtype=dtype)
    self.conditioned = conditioned

  def position_table(self) -> jax.Array:
    if self.position_kind == "learned":
      return self.positions[...]
    return jnp.concatenate([self.positions[...], self.fixed[...]], 0)

  def init_cache(self, batch: int) -> list:
    """Zeroed key/value buffers for decoding the full length, one (k, v) pair per block."""
    shape = (batch, self.length, self.blocks[0].attn.heads, self.blocks[0].attn.head_dim)
    return [(jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype)) for _ in self.blocks]

  def __call__(self, x, *, causal: bool = False, cond=None, key=None, cache=None, index=None):
    """x [B, n, width]. Full pass: n = length (or fewer, from position 0). Decoding: `cache` from init_cache and
    `index` the position of x's first slot; returns (hidden, new cache)."""
    if self.conditioned and cond is None:
      raise ValueError("This transformer is conditioned (adaLN): pass cond=[B, width].")
    n = x.shape[1]
    start = 0 if index is None else index
    x = x + jax.lax.dynamic_slice_in_dim(self.position_table(), start, n, axis=0)[None].astype(x.dtype)
    x = x.astype(self.dtype)
    if cache is not None:  # queries at start..start+n-1 see keys 0..their own position
      mask = (jnp.arange(self.length)[None, :] <= start + jnp.arange(n)[:, None])[None, None]
    elif causal:
      mask = jnp.tril(jnp.ones((n, n), bool))[None, None]
    else:
      mask = None
    keys = [None] * len(self.blocks) if key is None else list(jax.random.split(key, len(self.blocks)))
    new_cache = []
    for i, block in enumerate(self.blocks):
      x, c = block(x, mask, cond, None if cache is None else cache[i], index, self.dropout_rate, keys[i])
      new_cache.append(c)
    x = self.norm(x).astype(jnp.float32)
    return (x, new_cache) if cache is not None else x
