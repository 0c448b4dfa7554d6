"""Masked (absorbing-state) discrete diffusion in continuous time: MD4 (Shi et al. 2024) / MDLM (Sahoo et al.
2024), re-derived from google-deepmind/md4 `md4/models/diffusion/md4.py`.

Forward process: each code is independently replaced by the mask token with probability 1 - alpha(t).
Loss (the continuous-time negative ELBO, MD4 eq. 5), with t stratified across the batch (t_b = (u + b/B) mod 1):
  L = E_t [ -alpha'(t) / (1 - alpha(t)) * sum_{n masked in z_t} -log p_theta(x_n | z_t) ]     (nats per image)
reported as bits per token L / (N ln 2). (The eps-sized reconstruction and prior terms of the rescaled schedule
are left out: at eps = 1e-4 they are below 1e-3 bits per token.)
Ancestral sampler over a grid 1 = t_S > ... > t_0 = 0 (uniform, or cosine t_i = cos(pi/2 (1 - i/S))): from t to
s each masked token is revealed with probability (alpha_s - alpha_t) / (1 - alpha_t), its value drawn from the
model; tokens never change once revealed, and any mask left after the last step is filled by the last step's
argmax.
Editing (`codes`, base.py's convention): the chain starts from z_1 = the known codes, masks elsewhere; known tokens
are never masked, so only unknown ones are revealed (each with the probability above, which counts no known token)
and the final fill touches masks only. The reverse of a forward process that never masks the known set, this is
exact conditioning p(x | x_known) for an exact model: the posterior keeps unmasked tokens, and p(x_0 | z_t) depends
on z_t alone (MD4 sec. 3; a time-conditioned network sees more unmasked tokens at large t than in training).

Samplers (`sample(sampler=...)`), MD4's three step functions (`md4/models/diffusion/md4.py`, `*_sample_step`); each
masked token of z_t goes to z_s = x with probability u p(x | z_t) and stays masked with probability 1 - u,
u = (alpha_s - alpha_t) / (1 - alpha_t), so all three have the same law and differ in how they draw it:
  mean       (default; this module's sampler before the others existed) two draws per token, MD4's
             `mean_sample_step`: a value x ~ p(x | z_t) and a Bernoulli(u) reveal.
  ancestral  one categorical over the K + 1 outcomes [u p(x | z_t), 1 - u], MD4's `ancestral_sample_step` (its
             configs' default). With a factorised head (G digit groups) the first group's digit is drawn jointly
             with the reveal, over V + 1 outcomes, and the other digits independently (the same law).
  topp       `ancestral` on the top_p nucleus of p(x | z_t), MD4's `topp_sample_step` (config.topp = 0.98): nucleus
             filtering of the values, which `top_p` < 1 already does for any sampler; kept as a name for MD4's, it
             requires top_p < 1. (It is not a confidence-ordered reveal.)
ReMDM remasking (Wang et al. 2025, kuleshov-group/remdm `diffusion.py` `_ddpm_caching_update`; `remask`): an
unmasked token is remasked with probability sigma_t and otherwise kept, and a masked token is revealed with
probability (alpha_s - (1 - sigma_t) alpha_t) / (1 - alpha_t) (value ~ p(x | z_t)), masked otherwise: ReMDM's
q_sigma(z_s | z_t, x) with the source's SUBS carry-over of unmasked tokens, so that for an exact model z_s has the
forward marginals [alpha_s p(x), 1 - alpha_s]. sigma_t <= (1 - alpha_s) / alpha_t keeps the probabilities valid;
with eta = `remask_eta`:
  cap      sigma_t = min(eta, (1 - alpha_s) / alpha_t)          (source: `remdm-cap`)
  rescale  sigma_t = eta min(1, (1 - alpha_s) / alpha_t)        (source: `remdm-rescale`)
  loop     (source: `remdm-loop`, its scripts' (t_on, t_off, alpha_on) = (0.55, 0.05, 0.9)) the sampler's own
           alpha(t): 0 -> alpha_on linearly from t = 1 to t_on, held at alpha_on on [t_off, t_on], alpha_on -> 1
           linearly from t_off to 0 (`loop_alpha`); steps that start inside (t_off, t_on] remask with
           sigma_t = min(eta, (1 - alpha_on) / alpha_on), the others not: MDLM's steps to alpha_on, a loop of
           remask-and-reveal steps at a fixed noise level (a corrector for an exact model: the marginals stay
           [alpha_on p(x), 1 - alpha_on]), MDLM's steps to the end. The source feeds the network the grid's t; a
           time-conditioned network here sees the t at which the training schedule has the loop's alpha.
sigma_t = 0 is the sampler without remasking, draw for draw (the remask coin uses its own key). Known codes
(editing) are never remasked. Not implemented: the source's `remdm-conf` (per-token sigma from a confidence carried
across steps, whose reveal probability for masked tokens uses sigma = 0, so it does not keep the marginals).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.priors import heads as heads_lib
from vqgen.priors.base import PriorNetwork
from vqgen.priors.sampling import filter_logits, guidance_scale_at, sample_digits
from vqgen.priors.schedules import alpha as alpha_fn
from vqgen.priors.schedules import alpha_and_derivative

GRIDS = ("uniform", "cosine")
SAMPLERS = ("mean", "ancestral", "topp")
REMASKS = ("none", "cap", "rescale", "loop")
LOOP = (0.55, 0.05, 0.9)  # ReMDM-loop's (t_on, t_off, alpha_on), the source's scripts/remdm-loop.sh


def time_grid(steps: int, kind: str = "uniform") -> jax.Array:
  """t_i for i = 0 .. steps, increasing from 0 to 1."""
  i = jnp.arange(steps + 1, dtype=jnp.float32) / steps
  if kind == "uniform":
    return i
  if kind == "cosine":
    return jnp.clip(jnp.cos(jnp.pi / 2 * (1.0 - i)), 0.0, 1.0)  # cos(pi/2) is -4e-8 in float32
  raise ValueError(f"diffusion time grid must be one of {GRIDS}, got {kind!r}.")


def remask_sigma(alpha_t, alpha_s, remask: str = "none", eta: float = 0.0):
  """ReMDM's sigma_t for a step from t to s (module docstring): 'cap' min(eta, (1 - alpha_s) / alpha_t), 'rescale'
  eta min(1, (1 - alpha_s) / alpha_t), 'none' 0 ('loop' is 'cap' inside its loop, 0 outside: `sample`)."""
  if remask not in REMASKS:
    raise ValueError(f"remask must be one of {REMASKS}, got {remask!r}.")
  bound = (1.0 - jnp.asarray(alpha_s, jnp.float32)) / alpha_t
  if remask == "none":
    return jnp.zeros_like(bound)
  return eta * jnp.minimum(1.0, bound) if remask == "rescale" else jnp.minimum(eta, bound)


def loop_alpha(t, loop=LOOP):
  """ReMDM-loop's alpha(t) for loop = (t_on, t_off, alpha_on): alpha_on (1 - t) / (1 - t_on) above t_on,
  alpha_on on [t_off, t_on], 1 - t (1 - alpha_on) / t_off below t_off."""
  t_on, t_off, alpha_on = loop
  if not 0.0 < t_off < t_on < 1.0 or not 0.0 < alpha_on < 1.0:
    raise ValueError(f"remask loop (t_on, t_off, alpha_on) needs 0 < t_off < t_on < 1 and 0 < alpha_on < 1, got "
                     f"{tuple(loop)}.")
  t = jnp.asarray(t, jnp.float32)
  return jnp.where(t >= t_on, alpha_on * (1.0 - t) / (1.0 - t_on),
                   jnp.where(t <= t_off, 1.0 - t * (1.0 - alpha_on) / t_off, alpha_on))


def step_probabilities(p_x0: jax.Array, z_t: jax.Array, alpha_t, alpha_s, sigma=0.0) -> jax.Array:
  """p(z_s | z_t) of one step of every sampler, [..., K + 1] (codes, then the mask), for the model's p(x | z_t)
  p_x0 [..., K] and tokens z_t [...] (K = masked): a masked token is revealed with probability
  u = (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t), its value from p_x0, and an unmasked one is kept with
  probability 1 - sigma, remasked otherwise (ReMDM's q_sigma with the SUBS carry-over; sigma = 0 is MD4's step)."""
  k = p_x0.shape[-1]
  col = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), z_t.shape)[..., None]
  u = col(jnp.clip((alpha_s - (1.0 - sigma) * alpha_t) / (1.0 - alpha_t), 0.0, 1.0))
  from_mask = jnp.concatenate([u * p_x0, 1.0 - u], -1)
  from_code = jnp.concatenate([(1.0 - col(sigma)) * jax.nn.one_hot(z_t, k), col(sigma)], -1)
  return jnp.where((z_t == k)[..., None], from_mask, from_code)


class MaskedDiffusion(nnx.Module):
  # `bits_per_token` is the negative ELBO: an upper bound on the codes' negative log-likelihood given the class
  # (up to the eps-sized terms above), estimated with one t per sequence.
  LIKELIHOOD = "bound"

  def __init__(self, network: PriorNetwork, *, schedule: str = "linear", exponent: float = 2.0,
               eps: float = 1e-4):
    alpha_fn(0.5, schedule)  # validates the name early
    self.network, self.schedule, self.exponent, self.eps = network, schedule, exponent, eps

  def alpha(self, t):
    return alpha_fn(t, self.schedule, exponent=self.exponent, eps=self.eps)

  def time_of(self, alpha_value, iterations: int = 30):
    """The t in [0, 1] at which the training schedule's alpha (decreasing in t) equals alpha_value, by bisection
    (2^-30 in t)."""
    def halve(_, bounds):
      lo, hi = bounds
      mid = (lo + hi) / 2
      above = self.alpha(mid) > alpha_value
      return jnp.where(above, mid, lo), jnp.where(above, hi, mid)
    lo, hi = jax.lax.fori_loop(0, iterations, halve, (jnp.zeros_like(alpha_value), jnp.ones_like(alpha_value)))
    return (lo + hi) / 2

  def _logits(self, ids, t, key=None):
    return self.network(ids, t=t if self.network.time_conditioning else None, key=key)[:, 1:]

  def loss(self, codes: jax.Array, labels: jax.Array, rng: jax.Array, *, train: bool = True):
    """codes [B, N], labels [B] -> (negative ELBO in nats per image averaged over the batch, metrics)."""
    net, vocab = self.network, self.network.vocab
    b, n = codes.shape
    k_t, k_mask, k_label, k_drop = jax.random.split(rng, 4)
    t = jnp.mod(jax.random.uniform(k_t, ()) + jnp.arange(b) / b, 1.0)
    a, da = alpha_and_derivative(t, self.schedule, exponent=self.exponent, eps=self.eps)
    masked = jax.random.uniform(k_mask, (b, n)) > a[:, None]
    labels = net.drop_labels(labels, k_label) if train else labels
    logits = self._logits(net.sequence(labels, jnp.where(masked, vocab.mask_id, codes)), t,
                          k_drop if train else None)
    nll = heads_lib.cross_entropy(logits, net.factorization.digits(codes))
    per_image = (-da / (1.0 - a)) * jnp.sum(nll * masked, -1)
    loss = jnp.mean(per_image)
    return loss, {"bits_per_token": loss / (n * jnp.log(2.0)), "mask_fraction": jnp.mean(masked)}

  def sample(self, rng: jax.Array, labels: jax.Array, *, steps: int = 32, grid: str = "cosine",
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, guidance_scale: float = 1.0,
             guidance_schedule: str = "constant", codes: jax.Array | None = None, sampler: str = "mean",
             remask: str = "none", remask_eta: float = 0.0, remask_loop: tuple = LOOP) -> jax.Array:
    """Codes [B, N] from all-mask (or from `codes`, mask id where unknown) at t = 1 down to t = 0 in `steps` network
    calls, by MD4's `sampler` with ReMDM's `remask` schedule at eta = `remask_eta` (module docstring; `remask_loop`
    = (t_on, t_off, alpha_on) of remask='loop')."""
    if sampler not in SAMPLERS:
      raise ValueError(f"masked diffusion sampler must be one of {SAMPLERS}, got {sampler!r}.")
    if remask not in REMASKS:
      raise ValueError(f"remask must be one of {REMASKS}, got {remask!r}.")
    if sampler == "topp" and top_p >= 1.0:
      raise ValueError("sampler='topp' (MD4's topp_sample_step) draws from the top_p nucleus of p(x | z_t): set "
                       "top_p < 1 (MD4 uses 0.98).")
    if isinstance(remask_eta, (int, float)) and not 0.0 <= remask_eta <= 1.0:  # (a traced eta is not checked)
      raise ValueError(f"remask_eta must be in [0, 1], got {remask_eta}.")
    net, vocab = self.network, self.network.vocab
    b, n = labels.shape[0], net.num_tokens
    times = time_grid(steps, grid)
    z0, known = (jnp.full((b, n), vocab.mask_id, jnp.int32), None) if codes is None else net.known(codes, b)

    if remask == "loop":
      loop_alpha(0.5, remask_loop)  # checks the loop's settings before tracing

    def step(i, carry):
      z, _ = carry
      t, s = times[steps - i], times[steps - i - 1]
      if remask == "loop":  # the loop's own alpha; remasking (capped) only on steps starting inside the loop
        a_t, a_s = loop_alpha(t, remask_loop), loop_alpha(s, remask_loop)
        inside = (t <= remask_loop[0]) & (t > remask_loop[1])
        sigma = jnp.where(inside, remask_sigma(a_t, a_s, "cap", remask_eta), 0.0)
        t_net = self.time_of(a_t)
      else:
        a_t, a_s, t_net = self.alpha(t), self.alpha(s), t
        sigma = 0.0 if remask == "none" else remask_sigma(a_t, a_s, remask, remask_eta)
      scale = guidance_scale_at(guidance_scale, i / max(steps - 1, 1), guidance_schedule)
      logits = net.guided(z, labels, scale,
                          t=jnp.full((b,), t_net) if net.time_conditioning else None)
      z = self.sample_step(jax.random.fold_in(rng, i), z, logits, a_t, a_s, sigma, sampler=sampler,
                           temperature=temperature, top_k=top_k, top_p=top_p, known=known)
      return z, net.factorization.compose(jnp.argmax(logits, -1).astype(jnp.int32))

    z, greedy = jax.lax.fori_loop(0, steps, step, (z0, z0))
    return jnp.where(z == vocab.mask_id, greedy, z)

  def sample_step(self, key: jax.Array, z: jax.Array, logits: jax.Array, alpha_t, alpha_s, sigma=0.0, *,
                  sampler: str = "mean", temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  known: jax.Array | None = None) -> jax.Array:
    """One step z_t [B, N] -> z_s given the network's logits [B, N, G, V] at z_t: a draw from `step_probabilities`
    (after temperature / top-k / top-p) by `sampler`'s method; sigma > 0 remasks unmasked tokens not `known`."""
    fact, mask_id = self.network.factorization, self.network.vocab.mask_id
    masked = z == mask_id
    k_sample, k_reveal = jax.random.split(key)
    u = jnp.clip((alpha_s - (1.0 - sigma) * alpha_t) / (1.0 - alpha_t), 0.0, 1.0)  # a masked token's reveal
    if sampler == "mean":
      x = fact.compose(sample_digits(k_sample, logits, temperature, top_k, top_p))
      reveal = jax.random.uniform(k_reveal, z.shape) < u
    else:  # ancestral / topp: the first digit jointly with the reveal, over V + 1 outcomes
      log_p = jax.nn.log_softmax(filter_logits(logits, temperature, top_k, top_p), -1)
      stay = jnp.broadcast_to(jnp.log1p(-u), z.shape)[..., None]
      first = jax.random.categorical(k_sample, jnp.concatenate([jnp.log(u) + log_p[..., 0, :], stay], -1), -1)
      rest = jax.random.categorical(k_reveal, log_p[..., 1:, :], -1)
      reveal = first < fact.base
      x = fact.compose(jnp.concatenate([jnp.minimum(first, fact.base - 1)[..., None], rest], -1).astype(jnp.int32))
    z_s = jnp.where(masked & reveal, x, z)
    if isinstance(sigma, float) and sigma == 0.0:
      return z_s
    remask = ~masked & (jax.random.uniform(jax.random.fold_in(key, 1), z.shape) < sigma)
    if known is not None:
      remask &= ~known
    return jnp.where(remask, mask_id, z_s)

  @staticmethod
  def forward_passes(steps: int = 32, **_) -> int:
    return steps
