"""The pre-norm transformer shared by every prior and the ViT tokenizer: used bidirectionally (MaskGIT, diffusion,
ViT) or causally (autoregressive), with a static key/value cache for decoding and optional time conditioning by adaLN.

Block (pre-norm, GPT-2 / ViT):  x += gate_a * Attn(modulate(N(x)));  x += gate_m * MLP(modulate(N(x)))
where modulate(h) = h * (1 + scale) + shift and (shift, scale, gate) come from a zero-initialised linear map of
the conditioning vector (adaLN-Zero, DiT: Peebles & Xie 2023); without conditioning, gates are 1 and modulate is
the identity.

Options (the GPT-2 / ViT block by default; LlamaGen's with rmsnorm, swiglu, rope2d):
  norm       layernorm | rmsnorm  N(x) = x / sqrt(mean(x^2) + eps) * g  (Zhang & Sennrich 2019; eps 1e-5)
  mlp        gelu      W2 gelu(W1 x), hidden mlp_ratio * width
             swiglu    W2 (silu(W1 x) * W3 x) (Shazeer 2020), hidden 2/3 mlp_ratio * width rounded up to a
                       multiple of 256 (LlamaGen: 2048 for width 768), or of the width when that is smaller
  positions  learned   a learned vector per slot, added to the input
             2d        fixed 2-D sine-cosine over the code grid (MAE), a learned vector for the class slot
             rope2d    2-D rotary embedding of queries and keys (LlamaGen `precompute_freqs_cis_2d`): in every
                       head, pair j = (q[2j], q[2j+1]) of the first half of the pairs turns by angle row * w_j,
                       of the second half by col * w_j, w_j = 10000^(-2j / (head_dim / 2)); no additive
                       positions. The class slot is not turned (LlamaGen zeroes its q and k instead).

Parameters carry logical axis names (`embed`, `mlp`, `heads`, `vocab`) mapped to the mesh by config rules.
Dropout takes an explicit key, so a training step stays a pure function of (state, batch, rng).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

POSITIONS = ("learned", "2d", "rope2d")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


def dense(din: int, dout: int, axes: tuple, *, rngs: nnx.Rngs, dtype, zero: bool = False, bias: bool = True):
  init = nnx.initializers.zeros_init() if zero else nnx.initializers.xavier_uniform()
  return nnx.Linear(din, dout, use_bias=bias, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                    kernel_init=nnx.with_partitioning(init, axes),
                    bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)))


def layer_norm(width: int, *, rngs: nnx.Rngs, dtype, kind: str = "layernorm"):
  scale = nnx.with_partitioning(nnx.initializers.ones_init(), ("embed",))
  if kind == "rmsnorm":
    return nnx.RMSNorm(width, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, scale_init=scale, rngs=rngs)
  if kind != "layernorm":
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}.")
  return nnx.LayerNorm(width, epsilon=1e-6, dtype=dtype, param_dtype=jnp.float32, rngs=rngs, scale_init=scale,
                       bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed",)))


def swiglu_hidden(width: int, mlp_ratio: int) -> int:
  """SwiGLU's hidden size: 2/3 of mlp_ratio * width (the GELU MLP's parameters), rounded up to a multiple of
  min(256, width)."""
  multiple = min(256, width)
  return -(-int(2 * mlp_ratio * width / 3) // multiple) * multiple


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


def rope_2d(height: int, width: int, head_dim: int, prefix: int, base: float = 10000.0) -> np.ndarray:
  """Rotation angles [prefix + height * width, head_dim / 2] of 2-D RoPE: pair j < head_dim / 4 turns by
  row * w_j, pair head_dim / 4 + j by col * w_j, w_j = base^(-2j / (head_dim / 2)); prefix slots by 0."""
  if head_dim % 4:
    raise ValueError(f"2-D rotary positions need a head dimension divisible by 4, got {head_dim}.")
  half = head_dim // 2
  omega = 1.0 / base ** (np.arange(0, half, 2)[:half // 2] / half)
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  angles = np.concatenate([rows.reshape(-1, 1) * omega, cols.reshape(-1, 1) * omega], 1)
  return np.concatenate([np.zeros((prefix, half)), angles]).astype(np.float32)


def rotate(x: jax.Array, angles: jax.Array) -> jax.Array:
  """x [B, n, H, D] with consecutive pairs (x[2j], x[2j+1]) turned by angles [n, D / 2] (in float32)."""
  pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
  cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
  a, b = pairs[..., 0], pairs[..., 1]
  return jnp.stack([a * cos - b * sin, b * cos + a * sin], -1).reshape(x.shape).astype(x.dtype)


class Attention(nnx.Module):
  """Multi-head self-attention; `cache` = (k, v) [B, L_max, H, D_h] buffers written at `index` when decoding;
  `angles` [n, D_h / 2]: rotary positions of this call's slots (rope2d), applied to q and k before caching."""

  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, dtype):
    if width % heads:
      raise ValueError(f"Transformer width {width} must be divisible by the number of heads {heads}.")
    self.heads, self.head_dim = heads, width // heads
    self.qkv = dense(width, 3 * width, ("embed", "heads"), rngs=rngs, dtype=dtype)
    self.out = dense(width, width, ("heads", "embed"), rngs=rngs, dtype=dtype)

  def __call__(self, x, mask, cache=None, index=None, angles=None):
    b, n, _ = x.shape
    q, k, v = jnp.split(self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
    if angles is not None:
      q, k = rotate(q, angles), rotate(k, angles)
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

  def __init__(self, width: int, heads: int, mlp_ratio: int, conditioned: bool, *, rngs: nnx.Rngs, dtype,
               norm: str = "layernorm", mlp: str = "gelu"):
    if mlp not in MLPS:
      raise ValueError(f"mlp must be one of {MLPS}, got {mlp!r}.")
    self.norm1 = layer_norm(width, rngs=rngs, dtype=dtype, kind=norm)
    self.attn = Attention(width, heads, rngs=rngs, dtype=dtype)
    self.norm2 = layer_norm(width, rngs=rngs, dtype=dtype, kind=norm)
    hidden = swiglu_hidden(width, mlp_ratio) if mlp == "swiglu" else mlp_ratio * width
    self.fc1 = dense(width, hidden, ("embed", "mlp"), rngs=rngs, dtype=dtype)
    self.fc3 = dense(width, hidden, ("embed", "mlp"), rngs=rngs, dtype=dtype) if mlp == "swiglu" else None
    self.fc2 = dense(hidden, width, ("mlp", "embed"), rngs=rngs, dtype=dtype)
    # adaLN-Zero: shift, scale, gate for attention and MLP; zero init makes every block the identity at start.
    self.modulation = dense(width, 6 * width, ("embed", "mlp"), rngs=rngs, dtype=dtype, zero=True) \
        if conditioned else None

  def mlp(self, h):
    """W2 gelu(W1 h), or W2 (silu(W1 h) * W3 h) for SwiGLU."""
    if self.fc3 is None:
      return self.fc2(nnx.gelu(self.fc1(h)))
    return self.fc2(nnx.silu(self.fc1(h)) * self.fc3(h))

  def __call__(self, x, mask, cond=None, cache=None, index=None, rate=0.0, key=None, angles=None):
    if self.modulation is not None:
      mods = jnp.split(self.modulation(nnx.silu(cond))[:, None], 6, axis=-1)
      shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = mods
    else:
      shift_a = scale_a = shift_m = scale_m = 0.0
      gate_a = gate_m = 1.0
    keys = (None, None) if key is None else jax.random.split(key)
    h, cache = self.attn(self.norm1(x) * (1 + scale_a) + shift_a, mask, cache, index, angles)
    x = x + gate_a * dropout(h, rate, keys[0])
    h = self.mlp(self.norm2(x) * (1 + scale_m) + shift_m)
    return x + gate_m * dropout(h, rate, keys[1]), cache


class Transformer(nnx.Module):
  """Embeddings [B, L, width] -> hidden states [B, L, width] (after a final LayerNorm).

  `grid` (h, w) is the code grid; sequences are `prefix` leading slots (the class token) followed by h*w codes
  in raster order. `cond` [B, width] (e.g. a time embedding) modulates every block when `conditioned`.
  """

  def __init__(self, *, width: int, depth: int, heads: int, grid: tuple[int, int], prefix: int = 1,
               mlp_ratio: int = 4, dropout_rate: float = 0.0, positions: str = "learned",
               norm: str = "layernorm", mlp: str = "gelu", conditioned: bool = False, dtype=jnp.float32,
               rngs: nnx.Rngs):
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
    elif positions == "2d":
      self.positions = nnx.Param(init(rngs.params(), (prefix, width)))  # the class slot; codes get sincos
      self.fixed = nnx.Variable(jnp.asarray(sincos_2d(*grid, width)))
    else:
      if width % heads:
        raise ValueError(f"Transformer width {width} must be divisible by the number of heads {heads}.")
      self.angles = nnx.Variable(jnp.asarray(rope_2d(*grid, width // heads, prefix)))
    self.position_kind = positions
    self.blocks = nnx.List([Block(width, heads, mlp_ratio, conditioned, rngs=rngs, dtype=dtype, norm=norm, mlp=mlp)
                            for _ in range(depth)])
    self.norm = layer_norm(width, rngs=rngs, dtype=dtype, kind=norm)
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
    angles = None
    if self.position_kind == "rope2d":
      angles = jax.lax.dynamic_slice_in_dim(self.angles[...], start, n, axis=0)
    else:
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
      x, c = block(x, mask, cond, None if cache is None else cache[i], index, self.dropout_rate, keys[i], angles)
      new_cache.append(c)
    x = self.norm(x).astype(jnp.float32)
    return (x, new_cache) if cache is not None else x
