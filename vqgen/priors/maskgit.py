"""MaskGIT (Chang et al. 2022): a bidirectional transformer trained to predict masked codes, decoded in T
parallel steps (google-research/maskgit `libml/parallel_decode.py`, re-derived here).

Training: r ~ U[0, 1), mask exactly ceil(max(gamma(r), min_mask_ratio) N) random tokens per sequence,
cross-entropy on the masked tokens only, with label smoothing (0.1).
Decoding step t = 0 .. T-1 from all-mask (or from partially known codes: inpainting / editing):
  sample every masked token at `temperature` (optionally guided, top-k / top-p);
  confidence = log p(sample) + choice_temperature (1 - (t+1)/T) Gumbel, and +inf on tokens already known;
  keep n_t = clip(floor(N_0 gamma((t+1)/T)), 1, unknown - 1) least confident tokens masked, where N_0 is the
  number unknown at the start; the last step keeps none, so no mask is ever returned.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.priors import heads as heads_lib
from vqgen.priors.base import PriorNetwork
from vqgen.priors.sampling import guidance_scale_at, sample_digits
from vqgen.priors.schedules import mask_ratio


def rank(x: jax.Array) -> jax.Array:
  """Position of each entry in ascending order along the last axis (0 = smallest), ties broken by index."""
  return jnp.argsort(jnp.argsort(x, -1, stable=True), -1, stable=True)


class MaskGIT(nnx.Module):
  # The loss averages cross-entropies of masked codes given the others, weighted per masked token rather than as
  # masked diffusion's ELBO weighs them: no likelihood of the codes nor a bound on one, so the prior stage reports
  # no bits per token or per dimension for it.
  LIKELIHOOD = None

  def __init__(self, network: PriorNetwork, *, mask_schedule: str = "cosine", min_mask_ratio: float = 0.0,
               label_smoothing: float = 0.1):
    mask_ratio(0.5, mask_schedule, num_tokens=network.num_tokens)  # validates the name early
    if not 0.0 <= min_mask_ratio <= 1.0 or not 0.0 <= label_smoothing < 1.0:
      raise ValueError(f"Need min_mask_ratio in [0, 1] and label_smoothing in [0, 1), got {min_mask_ratio}, "
                       f"{label_smoothing}.")
    self.network, self.mask_schedule = network, mask_schedule
    self.min_mask_ratio, self.label_smoothing = min_mask_ratio, label_smoothing

  def loss(self, codes: jax.Array, labels: jax.Array, rng: jax.Array, *, train: bool = True):
    """codes [B, N] int, labels [B] -> (mean cross-entropy over masked tokens, metrics)."""
    net, vocab = self.network, self.network.vocab
    b, n = codes.shape
    k_ratio, k_mask, k_label, k_drop = jax.random.split(rng, 4)
    ratio = jnp.maximum(mask_ratio(jax.random.uniform(k_ratio, (b,)), self.mask_schedule, num_tokens=n),
                        self.min_mask_ratio)
    count = jnp.clip(jnp.ceil(ratio * n), 1, n).astype(jnp.int32)
    masked = rank(jax.random.uniform(k_mask, (b, n))) < count[:, None]
    labels = net.drop_labels(labels, k_label) if train else labels
    inputs = jnp.where(masked, vocab.mask_id, codes)
    logits = net(net.sequence(labels, inputs), key=k_drop if train else None)[:, 1:]
    digits = net.factorization.digits(codes)
    weights = masked.astype(jnp.float32)
    ce = heads_lib.cross_entropy(logits, digits, self.label_smoothing)
    nll = heads_lib.cross_entropy(logits, digits)
    correct = jnp.all(jnp.argmax(logits, -1) == digits, -1)
    total = weights.sum()
    return jnp.sum(ce * weights) / total, {"masked_nll": jnp.sum(nll * weights) / total,
                                           "masked_accuracy": jnp.sum(correct * weights) / total,
                                           "mask_fraction": total / (b * n)}

  def decode(self, rng: jax.Array, labels: jax.Array, *, codes: jax.Array | None = None, steps: int = 8,
             schedule: str | None = None, choice_temperature: float = 4.5, temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, guidance_scale: float = 1.0,
             guidance_schedule: str = "constant"):
    """Iterative parallel decoding. `codes` [B, N] holds known codes and mask_id where unknown (all mask when
    None). Returns (codes [B, N] with no mask, number still masked after each step [T, B])."""
    net, vocab = self.network, self.network.vocab
    schedule = schedule or self.mask_schedule
    b, n = labels.shape[0], net.num_tokens
    cur = jnp.full((b, n), vocab.mask_id, jnp.int32) if codes is None else net.known(codes, b)[0]
    unknown_start = jnp.sum(cur == vocab.mask_id, -1)

    def step(t, carry):
      cur, history = carry
      k_sample, k_choice = jax.random.split(jax.random.fold_in(rng, t))
      progress = (t + 1) / steps
      scale = guidance_scale_at(guidance_scale, t / max(steps - 1, 1), guidance_schedule)
      logits = net.guided(cur, labels, scale)
      digits = sample_digits(k_sample, logits, temperature, top_k, top_p)
      unknown = cur == vocab.mask_id
      sampled = jnp.where(unknown, net.factorization.compose(digits), cur)
      keep_masked = jnp.floor(unknown_start * mask_ratio(progress, schedule, num_tokens=n)).astype(jnp.int32)
      keep_masked = jnp.maximum(1, jnp.minimum(unknown.sum(-1) - 1, keep_masked))
      keep_masked = jnp.where(t == steps - 1, 0, keep_masked)
      confidence = heads_lib.log_prob(logits, digits)
      confidence += choice_temperature * (1.0 - progress) * jax.random.gumbel(k_choice, confidence.shape)
      confidence = jnp.where(unknown, confidence, jnp.inf)
      remask = unknown & (rank(confidence) < keep_masked[:, None])
      cur = jnp.where(remask, vocab.mask_id, sampled)
      return cur, history.at[t].set(jnp.sum(cur == vocab.mask_id, -1))

    return jax.lax.fori_loop(0, steps, step, (cur, jnp.zeros((steps, b), jnp.int32)))

  def sample(self, rng: jax.Array, labels: jax.Array, **kwargs) -> jax.Array:
    return self.decode(rng, labels, **kwargs)[0]

  @staticmethod
  def forward_passes(steps: int = 8, **_) -> int:
    """Sequential network evaluations of one `sample` call (NFE)."""
    return steps
