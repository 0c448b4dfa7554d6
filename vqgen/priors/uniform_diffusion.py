"""Uniform-noise discrete diffusion (D3PM-uniform, Austin et al. 2021), the self-correcting sibling of masked
diffusion: a corrupted token is a random code rather than a mask, so a sampler may revise any token at any step.

Forward process with alpha(t) from schedules.py (t in [0, 1]): x_t = x_0 with probability alpha(t), else a
uniformly random code; between s < t the kernel is Q_{t|s} = a I + (1 - a) / K 11^T with a = alpha(t) / alpha(s).
Posterior of one token given x_0 (D3PM eq. 3), writing A_j = a [j = x_t] + (1 - a) / K and
B_j(x_0) = alpha(s) [j = x_0] + (1 - alpha(s)) / K:
  q(x_s = j | x_t, x_0) = A_j B_j(x_0) / Z(x_0),   Z(x_0) = alpha(s) A_{x_0} + (1 - alpha(s)) / K.
The network predicts p(x_0 | x_t) (x_0-parameterisation) and p(x_s = j | x_t) = sum_{x_0} q(j | x_t, x_0) p(x_0 | x_t)
  = A_j [alpha(s) p(j) / Z(j) + (1 - alpha(s)) / K sum_{x_0} p(x_0) / Z(x_0)],   O(K) per token.
Loss: the discrete-time negative ELBO with T steps, T E_{i ~ U{1..T}} sum_n KL(q(x_s | x_t, x_0) || p(x_s | x_t))
at t = i/T, s = (i-1)/T, plus D3PM's auxiliary cross-entropy `aux_weight` * -log p(x_0 | x_t). Needs the full
softmax head (the posterior sums over all codes). Guidance (sampling.py's convention) applies to log p(x_0 | x_t).
Editing (`codes`, base.py's convention): a known token is corrupted by the forward process like any other, so
instead of clamping it, its x_t is drawn from q(x_t | x_0 = known) at t = 1 and after every step (RePaint's
conditioning on the known region, Lugmayr et al. 2022, without its resampling): the network then sees known tokens
with the noise it was trained on, and the unknown ones follow p(x_s | x_t). The output holds exactly the known codes.
`clamp_known=True` keeps them at their codes at every step instead (the simple choice): for the exact denoiser of a
toy data set it conditions more strongly (tests/test_editing.py), as fresh noise discards what the known codes say.
Predictor-corrector (`corrector_steps` = C, default 0: the plain ancestral sampler, draw for draw): after each
predictor step t -> s that lands on s > 0, C corrector steps at s, each a forward-backward move
  x' ~ q(x_t | x_s) = Q_{t|s}(x_s, .)   (re-noise to the step's start t: keep w.p. alpha(t) / alpha(s), else uniform)
  x_s ~ p(x_s | x')                      (the predictor's reverse step from x' at t: one network call)
For an exact model the one-token kernel C(x, y) = sum_z Q_{t|s}(x, z) q(y | x_t = z) is reversible with respect to
q(x_s): q_s(x) C(x, y) = sum_z q_s(x) Q(x, z) q_s(y) Q(y, z) / q_t(z) is symmetric, so q(x_s) is stationary
(`corrector_kernel` gives C in closed form). This is the discrete-time analogue of the corrector of Campbell et al.
2022 ("A Continuous Time Framework for Discrete Denoising Models", sec. 4.2: a CTMC with rate R_t + R^_t, forward
plus reverse, which leaves q_t invariant), which the paper simulates by tau-leaping and which keeps q_t only up to
that discretisation; here the two moves are exact jumps of the forward kernel and the model's reverse step, so the
invariance is exact for an exact one-token model (for N tokens the reverse step factorises over tokens, as the
predictor's does). Editing: known tokens re-noise with the rest (drawn from q(x_s | x_0 = known), they stay drawn from
q(x_t | x_0 = known)), are clamped in x' under `clamp_known`, and are redrawn or clamped after the backward move as
after a predictor step. NFE: steps + C (steps - 1).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.priors.base import PriorNetwork
from vqgen.priors.diffusion import time_grid
from vqgen.priors.sampling import filter_logits, guidance_scale_at
from vqgen.priors.schedules import alpha as alpha_fn


def posterior_log_probs(log_p_x0: jax.Array, x_t: jax.Array, alpha_t, alpha_s) -> jax.Array:
  """log p(x_s = j | x_t) [..., K] for a distribution over x_0 (log_p_x0 [..., K]); one-hot log_p_x0 gives q."""
  k = log_p_x0.shape[-1]
  a = jnp.asarray(alpha_t / alpha_s)[..., None]
  alpha_s = jnp.asarray(alpha_s)[..., None]
  at_x_t = jax.nn.one_hot(x_t, k, dtype=jnp.float32)
  big_a = a * at_x_t + (1.0 - a) / k                                  # A_j
  z = alpha_s * big_a + (1.0 - alpha_s) / k                            # Z(x_0) for every candidate x_0 = j
  p = jnp.exp(log_p_x0)
  mix = alpha_s * p / z + (1.0 - alpha_s) / k * jnp.sum(p / z, -1, keepdims=True)
  return jnp.log(big_a) + jnp.log(jnp.maximum(mix, 1e-30))


def corrupt(key: jax.Array, x_0: jax.Array, alpha_t, k: int) -> jax.Array:
  """x_t ~ q(x_t | x_0): x_0 with probability alpha(t), else a uniformly random code."""
  k_keep, k_noise = jax.random.split(key)
  keep = jax.random.uniform(k_keep, x_0.shape) < alpha_t
  return jnp.where(keep, x_0, jax.random.randint(k_noise, x_0.shape, 0, k, jnp.int32))


def corrector_kernel(log_p_x0: jax.Array, alpha_t, alpha_s) -> jax.Array:
  """The one-token corrector kernel C [K, K] (module docstring): C(x, y) = sum_z Q_{t|s}(x, z) p(x_s = y | x_t = z),
  for the model's log p(x_0 | x_t = z) given for every z as log_p_x0 [K (z), K (x_0)]."""
  k = log_p_x0.shape[-1]
  a = alpha_t / alpha_s
  forward = a * jnp.eye(k) + (1.0 - a) / k                                           # Q_{t|s}(x, z)
  backward = jnp.exp(posterior_log_probs(log_p_x0, jnp.arange(k), alpha_t, alpha_s))  # p(x_s = y | x_t = z)
  return forward @ backward


class UniformDiffusion(nnx.Module):
  # `bits_per_token` is the T-step negative ELBO without the auxiliary term: an upper bound on the codes' negative
  # log-likelihood given the class, estimated with one step per sequence, up to the eps-sized terms it leaves out
  # (the prior KL(q(x_1 | x_0) || uniform) and the decoding of x at t = 0: a few 1e-3 nats per token at eps = 1e-4).
  LIKELIHOOD = "bound"

  def __init__(self, network: PriorNetwork, *, schedule: str = "cosine", exponent: float = 2.0,
               eps: float = 1e-4, num_steps: int = 100, aux_weight: float = 0.01):
    alpha_fn(0.5, schedule)  # validates the name early
    if network.factorization.groups != 1:
      raise ValueError("Uniform diffusion sums its posterior over all codes: use the full softmax head "
                       "(network.head='full').")
    if num_steps < 1 or aux_weight < 0:
      raise ValueError(f"Need num_steps >= 1 and aux_weight >= 0, got {num_steps}, {aux_weight}.")
    self.network, self.schedule, self.exponent, self.eps = network, schedule, exponent, eps
    self.num_steps, self.aux_weight = num_steps, aux_weight

  def alpha(self, t):
    return alpha_fn(t, self.schedule, exponent=self.exponent, eps=self.eps)

  def _log_p_x0(self, logits):
    return jax.nn.log_softmax(logits[..., 0, :], -1)

  def _x0_logits(self, ids, t, key=None):
    return self.network(ids, t=t if self.network.time_conditioning else None, key=key)[:, 1:]

  def loss(self, codes: jax.Array, labels: jax.Array, rng: jax.Array, *, train: bool = True):
    net, k = self.network, self.network.vocab.codebook_size
    b, n = codes.shape
    k_t, k_keep, k_noise, k_label, k_drop = jax.random.split(rng, 5)
    # Stratified step indices i in {1..T}: one uniform offset, spread across the batch.
    i = 1 + jnp.floor(jnp.mod(jax.random.uniform(k_t, ()) + jnp.arange(b) / b, 1.0) * self.num_steps)
    t, s = i / self.num_steps, (i - 1) / self.num_steps
    a_t, a_s = self.alpha(t), self.alpha(s)
    keep = jax.random.uniform(k_keep, (b, n)) < a_t[:, None]
    x_t = jnp.where(keep, codes, jax.random.randint(k_noise, (b, n), 0, k))
    labels = net.drop_labels(labels, k_label) if train else labels
    log_p = self._log_p_x0(self._x0_logits(net.sequence(labels, x_t), t, k_drop if train else None))
    log_model = posterior_log_probs(log_p, x_t, a_t[:, None], a_s[:, None])
    log_true = posterior_log_probs(jnp.log(jax.nn.one_hot(codes, k) + 1e-30), x_t, a_t[:, None], a_s[:, None])
    kl = jnp.sum(jnp.exp(log_true) * (log_true - log_model), -1)      # [B, N]
    elbo = self.num_steps * jnp.mean(jnp.sum(kl, -1))
    aux = -jnp.mean(jnp.take_along_axis(log_p, codes[..., None], -1))
    return elbo + self.aux_weight * aux, {"bits_per_token": elbo / (n * jnp.log(2.0)), "x0_nll": aux,
                                          "corrupted_fraction": 1.0 - jnp.mean(keep)}

  def sample(self, rng: jax.Array, labels: jax.Array, *, steps: int = 32, grid: str = "cosine",
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, guidance_scale: float = 1.0,
             guidance_schedule: str = "constant", codes: jax.Array | None = None,
             clamp_known: bool = False, corrector_steps: int = 0) -> jax.Array:
    """Codes [B, N]: from uniform noise at t = 1, `steps` ancestral steps of p(x_s | x_t) down to t = 0, each landing
    on s > 0 followed by `corrector_steps` forward-backward corrector steps. With `codes` (mask id where unknown),
    known tokens are redrawn from q(x_s | x_0 = known) after each step, or with `clamp_known` kept at their codes
    throughout, and returned exactly (module docstring)."""
    if not isinstance(corrector_steps, int) or corrector_steps < 0:
      raise ValueError(f"corrector_steps must be an integer >= 0, got {corrector_steps!r}.")
    net, k = self.network, self.network.vocab.codebook_size
    b, n = labels.shape[0], net.num_tokens
    times = time_grid(steps, grid)
    init_key, rng = jax.random.split(rng)
    editing = codes is not None
    if editing:
      given, known = net.known(codes, b)
      edit_key = jax.random.fold_in(init_key, 1)

      def replace(key, x, t):  # the known tokens of x_t: drawn from q(x_t | x_0 = known), or clamped
        return jnp.where(known, given if clamp_known else corrupt(key, given, self.alpha(t), k), x)

    filters = dict(temperature=temperature, top_k=top_k, top_p=top_p)

    def move(i, c, x, t, s, scale):  # corrector move c after step i (module docstring)
      key = jax.random.fold_in(jax.random.fold_in(rng, i), c + 1)
      clamp = (given, known) if editing and clamp_known else None
      x = self.corrector_step(key, x, labels, t, s, scale, clamp=clamp, **filters)
      return replace(jax.random.fold_in(key, 2), x, s) if editing else x

    def step(i, x):
      t, s = times[steps - i], times[steps - i - 1]
      scale = guidance_scale_at(guidance_scale, i / max(steps - 1, 1), guidance_schedule)
      x = self.reverse_step(jax.random.fold_in(rng, i), x, labels, t, s, scale, **filters)
      x = replace(jax.random.fold_in(edit_key, i), x, s) if editing else x
      if corrector_steps:
        correct = lambda x: jax.lax.fori_loop(0, corrector_steps, lambda c, x: move(i, c, x, t, s, scale), x)
        x = jax.lax.cond(i < steps - 1, correct, lambda x: x, x)
      return x

    x_1 = jax.random.randint(init_key, (b, n), 0, k, jnp.int32)
    if not editing:
      return jax.lax.fori_loop(0, steps, step, x_1)
    x_1 = replace(jax.random.fold_in(edit_key, steps), x_1, times[steps])
    return jnp.where(known, given, jax.lax.fori_loop(0, steps, step, x_1))

  def reverse_step(self, key: jax.Array, x: jax.Array, labels: jax.Array, t, s, scale=1.0, *,
                   temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """x_s ~ p(x_s | x_t) for x_t = x [B, N] (one network call; guidance `scale`, then the logit filters)."""
    net, b = self.network, x.shape[0]
    logits = net.guided(x, labels, scale, t=jnp.full((b,), t) if net.time_conditioning else None)
    log_p = jax.nn.log_softmax(filter_logits(logits[..., 0, :], temperature, top_k, top_p), -1)
    log_post = posterior_log_probs(log_p, x, self.alpha(t), self.alpha(s))
    return jax.random.categorical(key, log_post, -1).astype(jnp.int32)

  def corrector_step(self, key: jax.Array, x: jax.Array, labels: jax.Array, t, s, scale=1.0, *,
                     clamp: tuple | None = None, **filters) -> jax.Array:
    """One forward-backward corrector move at s (module docstring): x' ~ Q_{t|s}(x, .), with `clamp` = (codes,
    known) put back into x', then x_s ~ p(x_s | x') by `reverse_step` (one network call)."""
    x_t = corrupt(jax.random.fold_in(key, 0), x, self.alpha(t) / self.alpha(s), self.network.vocab.codebook_size)
    if clamp is not None:
      x_t = jnp.where(clamp[1], clamp[0], x_t)
    return self.reverse_step(jax.random.fold_in(key, 1), x_t, labels, t, s, scale, **filters)

  @staticmethod
  def forward_passes(steps: int = 32, corrector_steps: int = 0, **_) -> int:
    return steps + corrector_steps * (steps - 1)

