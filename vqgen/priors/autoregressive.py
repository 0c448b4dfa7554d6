"""Autoregressive prior (VQGAN's transformer, LlamaGen): a causal transformer over raster-ordered codes with the
class token first; p(codes | c) = prod_i p(code_i | c, code_<i).

Decoding runs inside `jax.jit` as one `lax.fori_loop` over positions with a static, pre-allocated key/value
cache (one forward of a single token per position); `use_cache=False` recomputes the full causal forward at
every position instead (the slow reference path, for benchmarks and tests). Temperature, top-k, top-p and
classifier-free guidance (sampling.py's convention; the batch is doubled with the null class) apply per step.
Prefix completion / editing (`codes`, base.py's convention): at a known position the known code is fed instead of a
sample (to both halves of a guided batch). For a raster prefix this is exact conditioning, p(suffix | c, prefix);
for any other known set each code is conditioned only on the codes before it in raster order (a known code later
in the raster is not looked ahead at), as taming-transformers' completion samples are made.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.priors import heads as heads_lib
from vqgen.priors.base import PriorNetwork
from vqgen.priors.sampling import guidance_scale_at, guided_logits, sample_digits


class Autoregressive(nnx.Module):
  # `bits_per_token` is the exact negative log-likelihood of the codes given the class (chain rule).
  LIKELIHOOD = "exact"

  def __init__(self, network: PriorNetwork, *, label_smoothing: float = 0.0):
    if network.time_conditioning:
      raise ValueError("The autoregressive prior takes no time conditioning (set time_conditioning=False).")
    self.network, self.label_smoothing = network, label_smoothing

  def loss(self, codes: jax.Array, labels: jax.Array, rng: jax.Array, *, train: bool = True):
    """Teacher forcing: inputs [c, code_1 .. code_{N-1}] predict [code_1 .. code_N]; mean nats per token."""
    net = self.network
    k_label, k_drop = jax.random.split(rng)
    labels = net.drop_labels(labels, k_label) if train else labels
    logits = net(net.sequence(labels, codes[:, :-1]), causal=True, key=k_drop if train else None)
    return heads_lib.chain_rule_loss(logits, net.factorization.digits(codes), self.label_smoothing)

  def sample(self, rng: jax.Array, labels: jax.Array, *, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, guidance_scale: float = 1.0, guidance_schedule: str = "constant",
             use_cache: bool = True, codes: jax.Array | None = None) -> jax.Array:
    """Codes [B, N] sampled left to right; where `codes` [B, N] is not the mask id, its code is kept and fed."""
    net, vocab = self.network, self.network.vocab
    b, n = labels.shape[0], net.num_tokens
    editing = codes is not None
    given, known = net.known(codes, b) if editing else (None, None)
    guided = guidance_scale != 1.0
    cond_labels = jnp.concatenate([labels, jnp.full_like(labels, vocab.null_label)]) if guided else labels
    width = cond_labels.shape[0]
    # ids [width, N]: slot 0 the class token, slot i the code sampled at step i - 1 (the last code is never fed).
    ids = net.sequence(cond_labels, jnp.zeros((width, n - 1), jnp.int32))

    def logits_at(i, ids, cache):
      if use_cache:
        token = jax.lax.dynamic_slice_in_dim(ids, i, 1, axis=1)
        logits, cache = net(token, cache=cache, index=i)
        return logits[:, 0], cache
      return jax.lax.dynamic_index_in_dim(net(ids, causal=True), i, axis=1, keepdims=False), cache

    def step(i, carry):
      ids, codes, cache = carry
      logits, cache = logits_at(i, ids, cache)
      if guided:
        cond, uncond = jnp.split(logits, 2, 0)
        scale = guidance_scale_at(guidance_scale, i / max(n - 1, 1), guidance_schedule)
        logits = guided_logits(cond, uncond, scale)
      digits = sample_digits(jax.random.fold_in(rng, i), logits, temperature, top_k, top_p)
      code = net.factorization.compose(digits)
      if editing:  # feed the known code at position i
        code = jnp.where(known[:, i], given[:, i], code)
      codes = codes.at[:, i].set(code)
      fed = jnp.concatenate([code, code]) if guided else code
      ids = jax.lax.dynamic_update_slice_in_dim(ids, fed[:, None], jnp.minimum(i + 1, n - 1), axis=1) \
          if n > 1 else ids
      return ids, codes, cache

    cache = net.transformer.init_cache(width) if use_cache else None
    _, codes, _ = jax.lax.fori_loop(0, n, step, (ids, jnp.zeros((b, n), jnp.int32), cache))
    return codes

  def forward_passes(self, **_) -> int:
    """Sequential network evaluations of one `sample` call (NFE): one per code."""
    return self.network.num_tokens
