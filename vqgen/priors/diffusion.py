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
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.priors import heads as heads_lib
from vqgen.priors.base import PriorNetwork
from vqgen.priors.sampling import guidance_scale_at, sample_digits
from vqgen.priors.schedules import alpha as alpha_fn
from vqgen.priors.schedules import alpha_and_derivative

GRIDS = ("uniform", "cosine")


def time_grid(steps: int, kind: str = "uniform") -> jax.Array:
  """t_i for i = 0 .. steps, increasing from 0 to 1."""
  i = jnp.arange(steps + 1, dtype=jnp.float32) / steps
  if kind == "uniform":
    return i
  if kind == "cosine":
    return jnp.clip(jnp.cos(jnp.pi / 2 * (1.0 - i)), 0.0, 1.0)  # cos(pi/2) is -4e-8 in float32
  raise ValueError(f"diffusion time grid must be one of {GRIDS}, got {kind!r}.")


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
             guidance_schedule: str = "constant", codes: jax.Array | None = None) -> jax.Array:
    """Codes [B, N] by ancestral sampling from all-mask (or from `codes`, mask id where unknown) at t = 1 down to
    t = 0 in `steps` network calls."""
    net, vocab = self.network, self.network.vocab
    b, n = labels.shape[0], net.num_tokens
    times = time_grid(steps, grid)

    def step(i, carry):
      z, _ = carry
      t, s = times[steps - i], times[steps - i - 1]
      k_sample, k_reveal = jax.random.split(jax.random.fold_in(rng, i))
      scale = guidance_scale_at(guidance_scale, i / max(steps - 1, 1), guidance_schedule)
      logits = net.guided(z, labels, scale,
                          t=jnp.full((b,), t) if net.time_conditioning else None)
      x = net.factorization.compose(sample_digits(k_sample, logits, temperature, top_k, top_p))
      a_t, a_s = self.alpha(t), self.alpha(s)
      reveal = jax.random.uniform(k_reveal, (b, n)) < (a_s - a_t) / (1.0 - a_t)
      z = jnp.where((z == vocab.mask_id) & reveal, x, z)
      return z, net.factorization.compose(jnp.argmax(logits, -1).astype(jnp.int32))

    z0 = jnp.full((b, n), vocab.mask_id, jnp.int32) if codes is None else net.known(codes, b)[0]
    z, greedy = jax.lax.fori_loop(0, steps, step, (z0, z0))
    return jnp.where(z == vocab.mask_id, greedy, z)

  @staticmethod
  def forward_passes(steps: int = 32, **_) -> int:
    return steps
