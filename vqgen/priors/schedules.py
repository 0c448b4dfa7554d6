"""Masking schedules: MaskGIT's gamma(r) (fraction masked at progress r) and masked diffusion's alpha(t)
(probability a token is still unmasked at time t).

MaskGIT (Chang et al. 2022, google-research/maskgit `libml/mask_schedule.py`): gamma decreasing from 1 at r = 0 to 0
at r = 1; training masks ceil(gamma(r) N) tokens for r ~ U[0, 1), decoding keeps floor(N gamma((t+1)/T)) masked
after step t.
  cosine  cos(pi r / 2)       linear  1 - r          power  1 - r^p        arccos  arccos(r) / (pi / 2)
  log     -log2(r) / log2(N)  exp     1 - 2^(-log2(N) (1 - r))              (the last two depend on N)

Masked diffusion (MD4, Shi et al. 2024, `md4/models/diffusion/md4.py`): alpha decreasing from 1 at t = 0 to 0 at
t = 1, rescaled to [eps, 1 - eps] (eps = 1e-4) so the ELBO weight alpha'/(1 - alpha) stays finite:
  linear  1 - t              cosine  1 - cos(pi (1 - t) / 2)              poly  1 - t^p
"""

import jax
import jax.numpy as jnp

MASK_SCHEDULES = ("cosine", "linear", "power", "arccos", "log", "exp")
ALPHA_SCHEDULES = ("linear", "cosine", "poly")


def mask_ratio(r, schedule: str = "cosine", *, exponent: float = 2.0, num_tokens: int | None = None):
  """gamma(r): the fraction of tokens masked at progress r in [0, 1], clipped to [1e-6, 1] like the reference."""
  r = jnp.asarray(r, jnp.float32)
  if schedule == "cosine":
    g = jnp.cos(jnp.pi / 2 * r)
  elif schedule == "linear":
    g = 1.0 - r
  elif schedule == "power":
    g = 1.0 - r**exponent
  elif schedule == "arccos":
    g = jnp.arccos(jnp.clip(r, -1.0, 1.0)) / (jnp.pi / 2)
  elif schedule in ("log", "exp"):
    if not num_tokens:
      raise ValueError(f"mask schedule {schedule!r} depends on the number of tokens: pass num_tokens.")
    log_n = jnp.log2(float(num_tokens))
    g = -jnp.log2(jnp.maximum(r, 1e-12)) / log_n if schedule == "log" else 1.0 - jnp.exp2(-log_n * (1.0 - r))
  else:
    raise ValueError(f"mask schedule must be one of {MASK_SCHEDULES}, got {schedule!r}.")
  return jnp.clip(g, 1e-6, 1.0)


def alpha(t, schedule: str = "linear", *, exponent: float = 2.0, eps: float = 1e-4):
  """alpha(t), the probability that a token is unmasked at time t in [0, 1], within [eps, 1 - eps]."""
  t = jnp.asarray(t, jnp.float32)
  if schedule == "linear":
    a = 1.0 - t
  elif schedule == "cosine":
    a = 1.0 - jnp.cos(jnp.pi / 2 * (1.0 - t))
  elif schedule == "poly":
    a = 1.0 - t**exponent
  else:
    raise ValueError(f"diffusion schedule must be one of {ALPHA_SCHEDULES}, got {schedule!r}.")
  return (1.0 - 2.0 * eps) * a + eps


def alpha_and_derivative(t, schedule: str = "linear", **kwargs):
  """(alpha(t), alpha'(t)) elementwise, the derivative by forward-mode autodiff of `alpha`."""
  t = jnp.asarray(t, jnp.float32)
  return jax.jvp(lambda s: alpha(s, schedule, **kwargs), (t,), (jnp.ones_like(t),))
