"""Sampling helpers shared by the priors: classifier-free guidance, temperature, top-k / top-p, Gumbel noise.

Guidance convention (stated once, used by all three priors): on log-probabilities,
    guided = log p_u + s (log p_c - log p_u),     renormalised by the softmax that follows,
so s = 1 is the conditional model, s = 0 the unconditional one and s > 1 extrapolates (Ho & Salimans 2022 with
their w = s - 1; LlamaGen's `u + s (c - u)`). `guidance_scale_at` anneals s over sampling progress.
"""

import jax
import jax.numpy as jnp

GUIDANCE_SCHEDULES = ("constant", "linear", "cosine")


def guided_logits(cond: jax.Array, uncond: jax.Array, scale) -> jax.Array:
  """log p_u + s (log p_c - log p_u) over the last axis (see module docstring)."""
  lc, lu = jax.nn.log_softmax(cond, -1), jax.nn.log_softmax(uncond, -1)
  return lu + scale * (lc - lu)


def guidance_scale_at(scale: float, progress, schedule: str = "constant"):
  """The guidance scale at sampling progress in [0, 1]: constant s, or ramped from 1 (progress 0) to s
  (progress 1) linearly or along a half cosine (guidance annealing, MUSE / MDT). Scale 1 stays the Python
  float 1.0 at every progress, which tells `PriorNetwork.guided` to skip the unconditional pass."""
  if schedule not in GUIDANCE_SCHEDULES:
    raise ValueError(f"guidance schedule must be one of {GUIDANCE_SCHEDULES}, got {schedule!r}.")
  if scale == 1.0:
    return 1.0
  if schedule == "constant":
    return jnp.asarray(scale, jnp.float32)
  ramp = progress if schedule == "linear" else (1.0 - jnp.cos(jnp.pi * progress)) / 2.0  # cosine
  return 1.0 + (scale - 1.0) * ramp


def filter_logits(logits: jax.Array, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Temperature, then keep the top_k largest (0 = all) and the smallest set whose mass reaches top_p."""
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature} (use a small value for near-greedy).")
  logits = logits / temperature
  neg = jnp.finfo(logits.dtype).min
  if top_k and top_k < logits.shape[-1]:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, neg, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, -1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, -1)
    # Keep a token while the mass strictly before it is below top_p (the first token is always kept).
    before = jnp.cumsum(probs, -1) - probs
    cutoff = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf), -1, keepdims=True)
    logits = jnp.where(logits < cutoff, neg, logits)
  return logits


def sample_digits(key: jax.Array, logits: jax.Array, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> jax.Array:
  """A categorical draw per digit group: logits [..., G, V] -> int32 [..., G]."""
  return jax.random.categorical(key, filter_logits(logits, temperature, top_k, top_p), -1).astype(jnp.int32)
