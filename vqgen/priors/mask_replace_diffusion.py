"""Mask-and-replace discrete diffusion: VQ-Diffusion (Gu et al. 2022) with Improved VQ-Diffusion's sampling (Tang et
al. 2022), re-derived from microsoft/VQ-Diffusion `image_synthesis/modeling/transformers/diffusion_transformer.py`.

States: the K codes and [MASK] (id K), which is absorbing. One step (eq. 7), rows x_{t-1}, columns x_t:
  Q_t[i, j] = alpha_t [i = j] + beta_t (i, j codes),   Q_t[i, MASK] = gamma_t,   Q_t[MASK, MASK] = 1,
alpha_t + K beta_t + gamma_t = 1. The family is closed under products, so q(x_t | x_0) = Qbar_t[x_0] has the same
form with abar_t = prod alpha, 1 - gbar_t = prod (1 - gamma), K bbar_t = 1 - abar_t - gbar_t, and so has the jump
Q_{t|s} of the sampler (abar_t / abar_s, 1 - (1 - gbar_t) / (1 - gbar_s), the rest uniform).
Schedule (the source's `alpha_schedule`): abar_t and gbar_t linear in t = 1..T, from abar_1 = 0.99999 and
gbar_1 = 9e-6 (so K bbar_1 = 1e-6) to gbar_T = `mask_end` and K bbar_T = `replace_end`, abar_T = 1 - both.
The release's defaults are abar_T = 9e-6, gbar_T = 0.99999, hence K bbar_t = 1e-6 at every t (masking only, in
effect): `mask_end=0.99999, replace_end=1e-6`. Ours default to the paper's gbar_T = 0.9, K bbar_T = 0.1.
Posterior (D3PM eq. 3; VQ-Diffusion's x_0-parameterisation, eq. 11), O(K) per token with A_j = Q_{t|s}[j, x_t]:
  x_t = c:     p(x_s = j) = A_j [abar_s p(j) / Z(j) + bbar_s sum_x0 p(x_0) / Z(x_0)],   Z(x_0) = Qbar_t[x_0, c]
  x_t = MASK:  p(x_s = j) = gamma [abar_s p(j) + bbar_s] / gbar_t,   p(x_s = MASK) = gbar_s / gbar_t
(one-hot p gives q(x_s | x_t, x_0)). Loss as the source's: T E_t sum_n KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
(at t = 1 the KL against a one-hot q is the decoder NLL -log p(x_0 | x_1)) plus `aux_weight` T w_t sum_n
-log p(x_0 | x_t), w_t = 2 - (t - 1) / T (`adaptive_auxiliary_loss`). `bits_per_token` adds the prior term
KL(q(x_T | x_0) || p(x_T)) for p(x_T): [MASK] with probability gbar_T, else a uniform code; zero when abar_T = 0.
Differs from the source: t is stratified uniformly across the batch (the source importance-samples t by
sqrt E[L_t^2] after 10 visits of every t); the loss is in nats per image (the source divides by the tokens); sampling
starts from p(x_T) (the source always starts from all-[MASK], which is p(x_T) of its release schedule up to 1e-5;
under gbar_T = 0.9 it would make the bound infinite); `steps` < T jumps with the exact kernel Q_{t|s} on the grid
t_i = floor(i T / steps), where the source's `sample_fast` uses the one-step posterior of the step it lands on.
Guidance (sampling.py's convention) is the source's `cf + s (c - cf)` on log p(x_0 | x_t), renormalised, before
truncation (VQ-Diffusion's truncation r is `top_p`); the unconditional half uses the null class token, a learned
embedding trained by class dropout: Improved VQ-Diffusion's learnable null, for class labels.
Editing (`codes`, base.py's convention): known tokens are masked and replaced by the forward process like any other,
so instead of clamping them, their x_t is drawn from q(x_t | x_0 = known) = Qbar_t[x_0] at t = T and after every
step (RePaint's conditioning on the known region, Lugmayr et al. 2022, without its resampling): the network sees
them with the noise it was trained on. The purity sampler counts and reveals unknown masked tokens only. The output
holds exactly the known codes. `clamp_known=True` keeps them at their codes at every step instead (the simple choice):
for the exact denoiser of a toy data set it conditions more strongly (tests/test_editing.py), notably for `purity`,
which keeps the unknown tokens it revealed while the known ones were still mostly [MASK] until its last step.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.priors.base import PriorNetwork
from vqgen.priors.sampling import filter_logits, guidance_scale_at

KEEP_START, MASK_START = 0.99999, 9e-6   # the source's att_1 and ctt_1
STRATEGIES = ("ancestral", "purity")
LOG_ZERO = math.log(1e-30)             # the floor of every log-probability (the source clamps at -70)


def schedule(num_steps: int, codebook_size: int, mask_end: float = 0.9, replace_end: float = 0.1) -> np.ndarray:
  """[T + 1, 3] float64 rows (abar_t, bbar_t, gbar_t) for t = 0 .. T (row 0: the identity, (1, 0, 0))."""
  if num_steps < 2:
    raise ValueError(f"Mask-and-replace diffusion needs num_steps >= 2, got {num_steps}.")
  keep_end = 1.0 - mask_end - replace_end
  if not (mask_end >= MASK_START and replace_end >= 1e-6 and keep_end > -1e-12):
    raise ValueError(f"Need mask_end >= {MASK_START}, replace_end >= 1e-6 (the schedule's values at t = 1) and "
                     f"mask_end + replace_end <= 1, got mask_end={mask_end}, replace_end={replace_end}.")
  frac = np.arange(num_steps) / (num_steps - 1)
  keep = KEEP_START + frac * (max(keep_end, 0.0) - KEEP_START)
  mask = MASK_START + frac * (mask_end - MASK_START)
  cum = np.concatenate([[[1.0, 0.0, 0.0]], np.stack([keep, (1.0 - keep - mask) / codebook_size, mask], -1)])
  step = np.stack(jump(cum, np.arange(num_steps), np.arange(1, num_steps + 1), codebook_size), -1)
  assert np.all(cum >= 0) and np.all(step >= -1e-15) and np.all(step <= 1), (mask_end, replace_end)
  return cum


def jump(cum: np.ndarray, s, t, codebook_size: int):
  """(alpha, beta, gamma) of Q_{t|s}, the kernel from step s to t > s (Qbar_s Q_{t|s} = Qbar_t)."""
  (a_s, _, g_s), (a_t, _, g_t) = cum[s].T, cum[t].T
  alpha, gamma = a_t / a_s, 1.0 - (1.0 - g_t) / (1.0 - g_s)
  return alpha, (1.0 - alpha - gamma) / codebook_size, gamma


def prior_nats(cum: np.ndarray, codebook_size: int) -> float:
  """KL(q(x_T | x_0) || p(x_T)) per token (the same for every x_0), p(x_T): [MASK] w.p. gbar_T, else a uniform code."""
  a, b, g = cum[-1]
  u = (1.0 - g) / codebook_size
  return float((a + b) * np.log((a + b) / u) + (codebook_size - 1) * b * np.log(b / u))


def coefficients(cum: np.ndarray, s, t, codebook_size: int) -> np.ndarray:
  """float32 [..., 9]: the logs of Q_{t|s}'s (alpha, beta, gamma), Qbar_s's and Qbar_t's (abar, bbar, gbar)."""
  values = (*jump(cum, s, t, codebook_size), *cum[s].T, *cum[t].T)
  return np.log(np.maximum(np.stack(values, -1), 1e-30)).astype(np.float32)


def posterior_log_probs(log_p_x0: jax.Array, x_t: jax.Array, coef) -> jax.Array:
  """log p(x_s | x_t) [..., K + 1] (the last entry [MASK]) for p(x_0 | x_t) given as log_p_x0 [..., K], x_t [...]
  in [0, K], coef [..., 9] from `coefficients`. A one-hot log_p_x0 gives q(x_s | x_t, x_0)."""
  k = log_p_x0.shape[-1]
  la, lb, lg, la_s, lb_s, lg_s, la_t, lb_t, lg_t = (c[..., None] for c in jnp.moveaxis(jnp.asarray(coef), -1, 0))
  hit = jax.nn.one_hot(jnp.minimum(x_t, k - 1), k, dtype=jnp.bool_)
  log_a = jnp.where(hit, jnp.logaddexp(la, lb), lb)                    # Q_{t|s}[j, c]
  r = log_p_x0 - jnp.where(hit, jnp.logaddexp(la_t, lb_t), lb_t)        # log p(j) / Qbar_t[j, c]
  codes = log_a + jnp.logaddexp(la_s + r, lb_s + jax.nn.logsumexp(r, -1, keepdims=True))
  if_code = jnp.concatenate([codes, jnp.full_like(codes[..., :1], LOG_ZERO)], -1)
  masked = lg - lg_t + jnp.logaddexp(la_s + log_p_x0, lb_s)
  if_mask = jnp.concatenate([masked, jnp.broadcast_to(lg_s - lg_t, masked[..., :1].shape)], -1)
  return jnp.where((x_t == k)[..., None], if_mask, if_code)


def corrupt(key: jax.Array, x_0: jax.Array, cum_t, codebook_size: int) -> jax.Array:
  """x_t ~ q(x_t | x_0) = Qbar_t[x_0] for cum_t = (abar_t, bbar_t, gbar_t): [MASK] (id K) with probability gbar_t,
  x_0 with abar_t, else a uniform code (K bbar_t)."""
  k_noise, k_code = jax.random.split(key)
  a_t, _, g_t = cum_t
  u = jax.random.uniform(k_noise, x_0.shape)
  replaced = jax.random.randint(k_code, x_0.shape, 0, codebook_size, jnp.int32)
  return jnp.where(u < g_t, codebook_size, jnp.where(u < g_t + a_t, x_0, replaced))


class MaskReplaceDiffusion(nnx.Module):
  # `bits_per_token` is the T-step negative ELBO with its prior term, without the auxiliary term: an upper bound on
  # the codes' negative log-likelihood given the class, estimated with one step per sequence.
  LIKELIHOOD = "bound"

  def __init__(self, network: PriorNetwork, *, num_steps: int = 100, mask_end: float = 0.9,
               replace_end: float = 0.1, aux_weight: float = 1e-3, adaptive_aux: bool = True):
    if network.factorization.groups != 1:
      raise ValueError("Mask-and-replace diffusion sums its posterior over all codes: use the full softmax head "
                       "(network.head='full').")
    if aux_weight < 0:
      raise ValueError(f"Need aux_weight >= 0, got {aux_weight}.")
    schedule(num_steps, network.vocab.codebook_size, mask_end, replace_end)  # validates early
    self.network, self.num_steps, self.mask_end, self.replace_end = network, num_steps, mask_end, replace_end
    self.aux_weight, self.adaptive_aux = aux_weight, adaptive_aux

  def cumulative(self) -> np.ndarray:
    return schedule(self.num_steps, self.network.vocab.codebook_size, self.mask_end, self.replace_end)

  def _x0_logits(self, ids, t, key=None):
    return self.network(ids, t=t if self.network.time_conditioning else None, key=key)[:, 1:]

  def loss(self, codes: jax.Array, labels: jax.Array, rng: jax.Array, *, train: bool = True):
    """codes [B, N], labels [B] -> (negative ELBO + auxiliary term, nats per image averaged over the batch; metrics)."""
    net, k, big_t = self.network, self.network.vocab.codebook_size, self.num_steps
    b, n = codes.shape
    k_t, k_noise, k_code, k_label, k_drop = jax.random.split(rng, 5)
    # Stratified steps t in {1..T}: one uniform offset, spread across the batch.
    i = 1 + jnp.floor(jnp.mod(jax.random.uniform(k_t, ()) + jnp.arange(b) / b, 1.0) * big_t).astype(jnp.int32)
    cum = self.cumulative()
    a_t, _, g_t = jnp.asarray(cum, jnp.float32)[i].T[..., None]
    u = jax.random.uniform(k_noise, (b, n))
    masked, kept = u < g_t, (u >= g_t) & (u < g_t + a_t)
    x_t = jnp.where(masked, k, jnp.where(kept, codes, jax.random.randint(k_code, (b, n), 0, k)))
    labels = net.drop_labels(labels, k_label) if train else labels
    log_p = jax.nn.log_softmax(self._x0_logits(net.sequence(labels, x_t), i / big_t, k_drop if train else None)
                               [..., 0, :], -1)
    coef = jnp.asarray(coefficients(cum, np.arange(big_t), np.arange(1, big_t + 1), k))[i - 1][:, None]
    log_model = posterior_log_probs(log_p, x_t, coef)
    log_true = posterior_log_probs(jnp.where(jax.nn.one_hot(codes, k) > 0, 0.0, LOG_ZERO), x_t, coef)
    kl = jnp.sum(jnp.exp(log_true) * (log_true - log_model), -1)      # [B, N]; -log p(x_0 | x_1) at t = 1
    elbo = jnp.mean(big_t * jnp.sum(kl, -1)) + n * prior_nats(cum, k)
    nll = -jnp.take_along_axis(log_p, codes[..., None], -1)[..., 0]    # [B, N]
    weight = 2.0 - (i - 1) / big_t if self.adaptive_aux else jnp.ones(b)
    aux = jnp.mean(big_t * weight * jnp.sum(nll, -1))
    return elbo + self.aux_weight * aux, {"bits_per_token": elbo / (n * jnp.log(2.0)), "x0_nll": jnp.mean(nll),
                                          "mask_fraction": jnp.mean(masked),
                                          "replaced_fraction": jnp.mean(~masked & ~kept)}

  def sample(self, rng: jax.Array, labels: jax.Array, *, steps: int = 50, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, guidance_scale: float = 1.0, guidance_schedule: str = "constant",
             strategy: str = "ancestral", purity_weight: float = 1.0, codes: jax.Array | None = None,
             clamp_known: bool = False) -> jax.Array:
    """Codes [B, N]: from x_T ~ p(x_T), `steps` network calls on the grid t_i = floor(i T / steps), i = steps .. 0.
    With `codes` (mask id where unknown), known tokens are redrawn from q(x_s | x_0 = known) after each step, or with
    `clamp_known` kept at their codes throughout, and returned exactly (module docstring).

    ancestral  x_s ~ p(x_s | x_t) (the posterior above); the last step, to s = 0, draws every token from
               p(x_0 | x_{t_1}).
    purity     Improved VQ-Diffusion's purity prior (the source's prior_rule 2): of the tokens still masked, keep
               floor(m gbar_s / gbar_t) masked (the forward process's share) and reveal the others, chosen without
               replacement with probability proportional to their purity max_j p(x_0 = j | x_t) (normalised by the
               image's largest), their values drawn from softmax((1 + r purity) log p(x_0 | x_t)), r = `purity_weight`
               (the source's prior_weight, 'r' of its eq. 11); revealed tokens stay. The last step, as the source's
               t = 1, draws every token from p(x_0 | x_{t_1}).
    """
    if strategy not in STRATEGIES:
      raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}.")
    if not 1 <= steps <= self.num_steps:
      raise ValueError(f"steps must lie in [1, {self.num_steps}] (the chain's T), got {steps}.")
    net, k, big_t = self.network, self.network.vocab.codebook_size, self.num_steps
    b, n = labels.shape[0], net.num_tokens
    cum = self.cumulative()
    grid = np.arange(steps + 1) * big_t // steps
    t_from, s_to = grid[1:][::-1], grid[:-1][::-1]
    coef = jnp.asarray(coefficients(cum, s_to, t_from, k))
    keep_share = jnp.asarray(cum[s_to, 2] / cum[t_from, 2], jnp.float32)
    times = jnp.asarray(t_from / big_t, jnp.float32)
    k_mask, k_code, rng = jax.random.split(rng, 3)
    editing = codes is not None
    if editing:
      given, known = net.known(codes, b)
      cum_s = jnp.asarray(cum[s_to], jnp.float32)
      edit_key = jax.random.fold_in(k_mask, 1)

      def replace(j, x, cum_t):  # the known tokens of x_t: drawn from q(x_t | x_0 = known), or clamped
        return jnp.where(known, given if clamp_known else corrupt(jax.random.fold_in(edit_key, j), given, cum_t, k),
                         x)

    def step(j, x):
      key = jax.random.fold_in(rng, j)
      scale = guidance_scale_at(guidance_scale, j / max(steps - 1, 1), guidance_schedule)
      logits = net.guided(x, labels, scale, t=jnp.full((b,), times[j]) if net.time_conditioning else None)
      log_p = jax.nn.log_softmax(filter_logits(logits[..., 0, :], temperature, top_k, top_p), -1)
      last = j == steps - 1
      if strategy == "purity":
        candidates = (x == k) & ~known if editing else None
        x = jnp.where(last, jax.random.categorical(key, log_p, -1).astype(jnp.int32),
                      self._purity_step(jax.random.fold_in(key, 1), x, log_p, keep_share[j], purity_weight,
                                        candidates))
      else:
        log_post = posterior_log_probs(log_p, x, coef[j])
        log_post = log_post.at[..., k].set(jnp.where(last, -jnp.inf, log_post[..., k]))
        x = jax.random.categorical(key, log_post, -1).astype(jnp.int32)
      return replace(j, x, cum_s[j]) if editing else x

    x_big_t = jnp.where(jax.random.uniform(k_mask, (b, n)) < cum[-1, 2], k,
                        jax.random.randint(k_code, (b, n), 0, k, jnp.int32))
    if not editing:
      return jax.lax.fori_loop(0, steps, step, x_big_t)
    x_big_t = replace(steps, x_big_t, jnp.asarray(cum[-1], jnp.float32))
    return jnp.where(known, given, jax.lax.fori_loop(0, steps, step, x_big_t))

  @staticmethod
  def _purity_step(key, x, log_p, keep_share, purity_weight, candidates=None):
    """One purity step; `candidates` (default: the masked tokens) are the masked tokens it counts and reveals."""
    k = log_p.shape[-1]
    k_select, k_value = jax.random.split(key)
    masked = x == k if candidates is None else candidates
    purity = jnp.max(jnp.exp(log_p), -1)
    purity = purity / jnp.max(purity, -1, keepdims=True)
    values = jax.random.categorical(k_value, (1.0 + purity_weight * purity)[..., None] * log_p, -1)
    count = jnp.sum(masked, -1)
    reveal = count - jnp.floor(count * keep_share).astype(count.dtype)                      # [B]
    # Without replacement, proportional to purity: the `reveal` largest log purity + Gumbel (Plackett-Luce).
    scores = jnp.where(masked, jnp.log(purity) + jax.random.gumbel(k_select, purity.shape), -jnp.inf)
    kth = jnp.take_along_axis(-jnp.sort(-scores, -1), jnp.maximum(reveal - 1, 0)[:, None], -1)
    chosen = masked & (scores >= kth) & (reveal > 0)[:, None]
    return jnp.where(chosen, values.astype(jnp.int32), x)

  @staticmethod
  def forward_passes(steps: int = 50, **_) -> int:
    return steps
