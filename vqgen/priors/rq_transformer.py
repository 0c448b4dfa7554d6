"""RQ-Transformer (Lee et al. 2022, "Autoregressive Image Generation using Residual Quantization", Sec. 3.2): an
autoregressive prior over stacked codes S [T, D], the D codes at each of the T = h * w positions of a Residual or
Grouped tokenizer, factorised position by position and, within a position, code by code (eq. 3):

    p(S | c) = prod_t prod_d p(S_{t,d} | c, S_{<t}, S_{t,<d})

Spatial transformer (the PriorNetwork's, causal over positions in raster order; eq. 4-5):
    u_0 = e(c) (the class token),   u_t = PE_T(t) + sum_d e_d(S_{t-1,d})      ->  h_t, the context of position t
Depth transformer (causal over the D codes of one position, the same for every position; eq. 6-7):
    v_{t,1} = PE_D(1) + h_t,        v_{t,d} = PE_D(d) + sum_{d' < d} e_d'(S_{t,d'})   ->  logits of S_{t,d}
and the PriorNetwork's head turns the depth transformer's outputs into code logits (all depths share it).

The paper shares one embedding e over depths because RQ-VAE shares its codebook; vqgen's Residual and Grouped
quantizers have a codebook per level by default, so each depth d has its own table e_d: the PriorNetwork's code
embedding is depth 1's, `level_tables` hold depths 2 .. D (factorised like the network's, for large vocabularies).

Cost: the spatial transformer runs over T slots and the depth transformer over T x D slots in rows of D, where a
prior over the flattened codes runs every layer over T x D slots with attention over all of them (RQ-Transformer's
reason to exist; experiments/rq_vs_flat.py compares the two at equal compute).

Sampling runs inside `jax.jit`: a `lax.fori_loop` over positions with the spatial transformer's key/value cache and,
at each position, the D codes in turn with the depth transformer's own cache (T spatial + T x D depth passes of one
slot each); `use_cache=False` recomputes the teacher-forced forward for every code instead (the reference path of
the tests). Temperature, top-k, top-p, classifier-free guidance (sampling.py's convention, on a doubled batch) and
editing (base.py's convention: codes [B, T * D], depth last, a known code is fed instead of a sample) as the
autoregressive prior.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.nn.transformer import Transformer
from vqgen.priors import heads as heads_lib
from vqgen.priors.base import PriorNetwork
from vqgen.priors.sampling import guidance_scale_at, guided_logits, sample_digits


class RQTransformer(nnx.Module):
  # `bits_per_token` is the exact negative log-likelihood per code (chain rule over positions and depths).
  LIKELIHOOD = "exact"

  def __init__(self, network: PriorNetwork, depth_transformer: Transformer, *, label_smoothing: float = 0.0,
               rngs: nnx.Rngs):
    """`network`: the spatial transformer over the code grid (h, w), its embedding (class token, depth 1's codes)
    and head; `depth_transformer`: over one position's D codes (grid (1, D), no prefix slot, the same width)."""
    if network.time_conditioning:
      raise ValueError("The RQ-Transformer takes no time conditioning (set time_conditioning=False).")
    if depth_transformer.prefix != 0 or depth_transformer.grid[0] != 1:
      raise ValueError(f"The depth transformer runs over one position's codes: grid (1, D) and prefix 0, got grid "
                       f"{depth_transformer.grid} and prefix {depth_transformer.prefix}.")
    if depth_transformer.width != network.transformer.width:
      raise ValueError(f"The depth transformer's width {depth_transformer.width} must equal the spatial "
                       f"transformer's {network.transformer.width}.")
    self.network, self.depth_transformer, self.label_smoothing = network, depth_transformer, label_smoothing
    self.code_depth = depth_transformer.grid[1]
    self.num_tokens = network.num_tokens * self.code_depth
    f, width = network.factorization, depth_transformer.width
    init = nnx.with_partitioning(nnx.initializers.normal(0.02), (None, None, "vocab", "embed"))
    # None for D = 1 (a checkpoint holds no empty arrays).
    self.level_tables = nnx.Param(init(rngs.params(), (self.code_depth - 1, f.groups, f.base, width))) \
        if self.code_depth > 1 else None

  def embed_level(self, d: int, codes: jax.Array) -> jax.Array:
    """e_d(codes) for depth index d (0-based, static): codes [...] -> [..., width]."""
    if d == 0:
      return self.network.embed(codes)
    digits = self.network.factorization.digits(codes)
    table = self.level_tables[d - 1]
    return sum(jnp.take(table[g], digits[..., g], axis=0) for g in range(digits.shape[-1]))

  def logits(self, codes: jax.Array, labels: jax.Array, key=None) -> jax.Array:
    """Teacher forcing: codes [B, T, D] and labels [B] -> logits [B, T, D, G, V] of every S_{t,d} given
    c, S_{<t} and S_{t,<d} (eq. 4-7)."""
    net, b, t = self.network, codes.shape[0], codes.shape[1]
    k_spatial, k_depth = (None, None) if key is None else jax.random.split(key)
    emb = jnp.stack([self.embed_level(d, codes[..., d]) for d in range(self.code_depth)], 2)  # [B, T, D, W]
    start = net.embed(net.vocab.class_id(labels))[:, None]
    u = jnp.concatenate([start, jnp.sum(emb[:, :-1], 2)], 1)                           # u_0 .. u_{T-1}
    h = net.transformer(u, causal=True, key=k_spatial)                                  # [B, T, W]
    v = jnp.concatenate([h[:, :, None], jnp.cumsum(emb, 2)[:, :, :-1]], 2)             # [B, T, D, W]
    out = self.depth_transformer(v.reshape(b * t, self.code_depth, -1), causal=True, key=k_depth)
    logits = net.head(out)                                                              # [B T, D, G, V]
    return logits.reshape((b, t) + logits.shape[1:])

  def loss(self, codes: jax.Array, labels: jax.Array, rng: jax.Array, *, train: bool = True):
    """Mean nats per code over codes [B, T * D] (depth last, as the code cache flattens [h, w, D])."""
    net = self.network
    k_label, k_drop = jax.random.split(rng)
    labels = net.drop_labels(labels, k_label) if train else labels
    codes = codes.reshape(codes.shape[0], net.num_tokens, self.code_depth)
    logits = self.logits(codes, labels, k_drop if train else None)
    return heads_lib.chain_rule_loss(logits, net.factorization.digits(codes), self.label_smoothing)

  def sample(self, rng: jax.Array, labels: jax.Array, *, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, guidance_scale: float = 1.0, guidance_schedule: str = "constant",
             use_cache: bool = True, codes: jax.Array | None = None) -> jax.Array:
    """Codes [B, T * D] (depth last), position by position and depth by depth; where `codes` [B, T * D] is not
    the mask id its code is kept and fed."""
    net, vocab, depth = self.network, self.network.vocab, self.code_depth
    b, positions = labels.shape[0], net.num_tokens
    editing = codes is not None
    if editing:
      given, known = net.known(codes, b, self.num_tokens)
      given, known = given.reshape(b, positions, depth), known.reshape(b, positions, depth)
    guided = guidance_scale != 1.0
    cond_labels = jnp.concatenate([labels, jnp.full_like(labels, vocab.null_label)]) if guided else labels
    width = cond_labels.shape[0]
    twice = (lambda x: jnp.concatenate([x, x])) if guided else (lambda x: x)

    def choose(t, d, logits):
      """The code at (t, d) from its logits [width, G, V]: guided, filtered, drawn; the known code if editing."""
      if guided:
        cond, uncond = jnp.split(logits, 2, 0)
        progress = (t * depth + d) / max(self.num_tokens - 1, 1)
        logits = guided_logits(cond, uncond, guidance_scale_at(guidance_scale, progress, guidance_schedule))
      key = jax.random.fold_in(rng, t * depth + d)
      code = net.factorization.compose(sample_digits(key, logits, temperature, top_k, top_p))
      return jnp.where(known[:, t, d], given[:, t, d], code) if editing else code

    def cached_position(t, carry):
      u, out, cache = carry                       # u [width, 1, W]: the spatial input of slot t
      v, cache = net.transformer(u, cache=cache, index=t)
      depth_cache, total = self.depth_transformer.init_cache(width), 0.0
      for d in range(depth):                      # v [width, 1, W]: the depth input of slot d
        hidden, depth_cache = self.depth_transformer(v, cache=depth_cache, index=d)
        code = choose(t, d, net.head(hidden)[:, 0])
        out = jax.lax.dynamic_update_slice(out, code[:, None, None], (0, t, d))
        total = total + self.embed_level(d, twice(code))
        v = total[:, None]
      return total[:, None], out, cache

    def uncached_position(t, out):
      for d in range(depth):
        logits = jax.lax.dynamic_index_in_dim(self.logits(twice(out), cond_labels), t, 1, keepdims=False)
        out = jax.lax.dynamic_update_slice(out, choose(t, d, logits[:, d])[:, None, None], (0, t, d))
      return out

    out = jnp.zeros((b, positions, depth), jnp.int32)
    if use_cache:
      start = net.embed(vocab.class_id(cond_labels))[:, None]
      _, out, _ = jax.lax.fori_loop(0, positions, cached_position,
                                    (start, out, net.transformer.init_cache(width)))
    else:
      out = jax.lax.fori_loop(0, positions, uncached_position, out)
    return out.reshape(b, self.num_tokens)

  def forward_passes(self, **_) -> int:
    """Sequential network evaluations of one `sample` call (NFE): per position one spatial pass and D depth
    passes, each of a single slot."""
    return self.network.num_tokens * (1 + self.code_depth)
