"""What the priors share: token ids, embedding, transformer, head, class conditioning and guidance.

Sequences are [class token, code_1 .. code_N] with codes in raster order over the tokenizer's code grid. The
class token carries the label; labels are replaced by the null class with probability `class_dropout` during
training, which trains the unconditional model used by classifier-free guidance (sampling.py's convention).
Editing (inpainting, prefix completion, resampling a region) has one convention for every prior:
`sample(rng, labels, *, codes=None, ...)` with `codes` [B, N] holding the known codes and the mask id where unknown
(`PriorNetwork.known`); known codes come back unchanged. What each family does with them is in its sampler.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.priors import heads as heads_lib
from vqgen.priors.sampling import guided_logits
from vqgen.nn.transformer import Transformer, dense


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10000.0) -> jax.Array:
  """Sinusoidal features of t in [0, 1] (scaled by 1000, as DiT / MD4 do): [B] -> [B, dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = 1000.0 * t.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], -1)


class PriorNetwork(nnx.Module):
  """Token ids [B, 1 + N] (class token first) -> code logits [B, 1 + N, G, V]."""

  def __init__(self, *, codebook_size: int, grid: tuple[int, int], num_classes: int, width: int, depth: int,
               heads: int, mlp_ratio: int = 4, dropout_rate: float = 0.0, positions: str = "learned",
               norm: str = "layernorm", mlp: str = "gelu", head: str = "full", head_groups: int = 2, class_dropout: float = 0.1,
               time_conditioning: bool = False, dtype=jnp.float32, rngs: nnx.Rngs):
    if not 0.0 <= class_dropout < 1.0:
      raise ValueError(f"class_dropout must be in [0, 1), got {class_dropout}.")
    if class_dropout > 0 and num_classes == 0:
      raise ValueError("class_dropout > 0 needs num_classes > 0 (an unconditional prior has nothing to drop).")
    self.vocab = heads_lib.Vocabulary(codebook_size, num_classes)
    self.factorization = heads_lib.Factorization(codebook_size, head, head_groups)
    self.grid, self.num_tokens, self.class_dropout = tuple(grid), grid[0] * grid[1], class_dropout
    self.embed = heads_lib.TokenEmbed(self.vocab, self.factorization, width, rngs=rngs)
    self.transformer = Transformer(width=width, depth=depth, heads=heads, grid=grid, prefix=1,
                                   mlp_ratio=mlp_ratio, dropout_rate=dropout_rate, positions=positions,
                                   norm=norm, mlp=mlp, conditioned=time_conditioning, dtype=dtype, rngs=rngs)
    self.head = heads_lib.CodeHead(self.factorization, width, rngs=rngs, dtype=dtype)
    if time_conditioning:
      self.time_mlp1 = dense(width, width, ("embed", "mlp"), rngs=rngs, dtype=jnp.float32)
      self.time_mlp2 = dense(width, width, ("mlp", "embed"), rngs=rngs, dtype=jnp.float32)
    self.time_conditioning = time_conditioning

  def drop_labels(self, labels: jax.Array, key: jax.Array) -> jax.Array:
    """Conditional dropout: each label becomes the null class with probability class_dropout."""
    if self.vocab.num_classes == 0:
      return jnp.full_like(labels, self.vocab.null_label)
    drop = jax.random.bernoulli(key, self.class_dropout, labels.shape)
    return jnp.where(drop, self.vocab.null_label, labels)

  def sequence(self, labels: jax.Array, codes: jax.Array) -> jax.Array:
    """[B] labels and [B, n] code/mask ids -> [B, 1 + n] token ids."""
    return jnp.concatenate([self.vocab.class_id(labels)[:, None].astype(jnp.int32), codes.astype(jnp.int32)], 1)

  def __call__(self, ids: jax.Array, *, t: jax.Array | None = None, causal: bool = False, key=None,
               cache=None, index=None):
    cond = None
    if self.time_conditioning:
      if t is None:
        raise ValueError("This prior network is time-conditioned: pass t=[B].")
      width = self.transformer.width
      cond = self.time_mlp2(nnx.silu(self.time_mlp1(timestep_embedding(t, width))))
    out = self.transformer(self.embed(ids), causal=causal, cond=cond, key=key, cache=cache, index=index)
    if cache is not None:
      hidden, cache = out
      return self.head(hidden), cache
    return self.head(out)

  def known(self, codes, batch: int, num_tokens: int | None = None) -> tuple[jax.Array, jax.Array]:
    """The editing convention of every prior's `sample(rng, labels, *, codes=None, ...)`: `codes` [B, N] holds the
    known codes and `vocab.mask_id` where unknown; N = num_tokens (default: the grid's, one code per slot).
    Returns (codes int32 [B, N], known bool [B, N])."""
    codes, n = jnp.asarray(codes), num_tokens or self.num_tokens
    if codes.shape != (batch, n):
      raise ValueError(f"codes must be [B, N] = [{batch}, {n}] (known codes, mask id "
                       f"{self.vocab.mask_id} where unknown), got shape {codes.shape}.")
    codes = codes.astype(jnp.int32)
    return codes, codes != self.vocab.mask_id

  def guided(self, codes: jax.Array, labels: jax.Array, scale, *, t=None) -> jax.Array:
    """Code logits [B, N, G, V] for the code ids [B, N] under classifier-free guidance at `scale` (one pass over
    the doubled batch [conditional; null class]); scale == 1 skips the unconditional half."""
    ids = self.sequence(labels, codes)
    if isinstance(scale, (int, float)) and scale == 1.0:
      return self(ids, t=t)[:, 1:]
    null = jnp.full_like(labels, self.vocab.null_label)
    both = jnp.concatenate([ids, self.sequence(null, codes)], 0)
    tt = None if t is None else jnp.concatenate([t, t], 0)
    cond, uncond = jnp.split(self(both, t=tt)[:, 1:], 2, 0)
    return guided_logits(cond, uncond, scale)
