"""Token ids, code embeddings and output heads of the priors, including the factorised forms for large
vocabularies (LFQ / BSQ codes with 2^14 - 2^18 entries, where a full softmax does not fit).

A code k in [0, K) is written as G digits in base V (K = V^G, least significant digit first):
  full        G = 1, V = K                 exact softmax over all codes
  factorized  G groups of b/G bits, V = 2^(b/G)   (MaskBit: independent softmaxes per bit group)
  per_bit     G = b, V = 2                 one binary decision per bit (LFQ's natural form)
The head predicts [..., G, V] logits and log p(k) = sum_g log p_g(digit_g); the factorised forms assume the
digits independent given the context (exact for `full`). Inputs are embedded the same way, as the sum of one
embedding per digit, so neither side ever holds a K x width table for large K.
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

HEADS = ("full", "factorized", "per_bit")


class Vocabulary:
  """Token ids of a prior: codes [0, K), then the mask token K, classes K+1 .. K+C, and the null class K+1+C.

  Special ids live outside the code range by construction; `check_codes` asserts real code arrays fit it (an
  out-of-range id would silently index garbage in an embedding).
  """

  def __init__(self, codebook_size: int, num_classes: int):
    if codebook_size < 2 or num_classes < 0:
      raise ValueError(f"Need codebook_size >= 2 and num_classes >= 0, got {codebook_size}, {num_classes}.")
    self.codebook_size, self.num_classes = codebook_size, num_classes
    self.mask_id = codebook_size
    self.null_label = num_classes          # label value meaning "no class" (classifier-free guidance)
    self.num_special = num_classes + 2     # mask, classes, null
    self.size = codebook_size + self.num_special
    assert self.mask_id >= codebook_size and self.class_id(self.null_label) == self.size - 1

  def class_id(self, labels):
    """Labels in [0, C] (C = null) -> token ids K+1 .. K+1+C."""
    return self.codebook_size + 1 + labels

  def check_codes(self, codes) -> None:
    lo, hi = int(jnp.min(codes)), int(jnp.max(codes))
    if lo < 0 or hi >= self.codebook_size:
      raise ValueError(f"Codes must lie in [0, {self.codebook_size}); found values in [{lo}, {hi}]. Was the "
                       "code cache extracted with a different tokenizer?")


class Factorization:
  """Codes <-> G base-V digits (least significant first)."""

  def __init__(self, codebook_size: int, head: str = "full", groups: int = 2):
    if head not in HEADS:
      raise ValueError(f"head must be one of {HEADS}, got {head!r}.")
    bits = int(round(math.log2(codebook_size)))
    if head != "full" and 2**bits != codebook_size:
      raise ValueError(f"head={head!r} splits codes into bits: codebook_size must be a power of two, got "
                       f"{codebook_size}. Use head='full'.")
    if head == "factorized" and (groups < 1 or bits % groups):
      raise ValueError(f"head='factorized' needs groups dividing the {bits} code bits, got groups={groups}.")
    self.groups, self.base = {"full": (1, codebook_size), "factorized": (groups, 2 ** (bits // max(groups, 1))),
                              "per_bit": (bits, 2)}[head]
    self.codebook_size = codebook_size

  def digits(self, codes: jax.Array) -> jax.Array:
    powers = self.base ** jnp.arange(self.groups, dtype=jnp.int32)
    return (codes[..., None] // powers) % self.base

  def compose(self, digits: jax.Array) -> jax.Array:
    return jnp.sum(digits * self.base ** jnp.arange(self.groups, dtype=jnp.int32), -1).astype(jnp.int32)


class TokenEmbed(nnx.Module):
  """Token ids [...] -> [..., width]: codes as the sum of their digit embeddings, special ids from their table."""

  def __init__(self, vocab: Vocabulary, factorization: Factorization, width: int, *, rngs: nnx.Rngs):
    init = nnx.with_partitioning(nnx.initializers.normal(0.02), (None, "vocab", "embed"))
    self.vocab, self.factorization = vocab, factorization
    self.digit_table = nnx.Param(init(rngs.params(), (factorization.groups, factorization.base, width)))
    self.special_table = nnx.Param(nnx.initializers.normal(0.02)(rngs.params(), (vocab.num_special, width)))

  def __call__(self, ids: jax.Array) -> jax.Array:
    k = self.vocab.codebook_size
    is_code = ids < k
    digits = self.factorization.digits(jnp.where(is_code, ids, 0))
    table = self.digit_table[...]
    codes = sum(jnp.take(table[g], digits[..., g], axis=0) for g in range(self.factorization.groups))
    special = jnp.take(self.special_table[...], jnp.clip(ids - k, 0, self.vocab.num_special - 1), axis=0)
    return jnp.where(is_code[..., None], codes, special)


class CodeHead(nnx.Module):
  """Hidden [..., width] -> float32 logits [..., G, V] over code digits."""

  def __init__(self, factorization: Factorization, width: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
    self.groups, self.base = factorization.groups, factorization.base
    self.proj = nnx.Linear(width, self.groups * self.base, dtype=dtype, param_dtype=jnp.float32, rngs=rngs,
                           kernel_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("embed", "vocab")),
                           bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("vocab",)))

  def __call__(self, h: jax.Array) -> jax.Array:
    return self.proj(h).astype(jnp.float32).reshape(h.shape[:-1] + (self.groups, self.base))


def cross_entropy(logits: jax.Array, digits: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """-log p(code) = sum over digit groups of the (label-smoothed) cross-entropy; [..., G, V], [..., G] -> [...]."""
  base = logits.shape[-1]
  targets = jax.nn.one_hot(digits, base) * (1.0 - label_smoothing) + label_smoothing / base
  return -jnp.sum(targets * jax.nn.log_softmax(logits, -1), (-2, -1))


def log_prob(logits: jax.Array, digits: jax.Array) -> jax.Array:
  """log p(code) = sum_g log p_g(digit_g): [..., G, V], [..., G] -> [...]."""
  lp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), digits[..., None], -1)[..., 0]
  return jnp.sum(lp, -1)


def chain_rule_loss(logits: jax.Array, digits: jax.Array, label_smoothing: float = 0.0):
  """The loss of a prior whose logits are every code's conditional (autoregressive, RQ-Transformer): the mean
  (label-smoothed) cross-entropy per code, and the metrics nll (nats per code, exact), bits_per_token, accuracy."""
  nll = jnp.mean(cross_entropy(logits, digits))
  accuracy = jnp.mean(jnp.all(jnp.argmax(logits, -1) == digits, -1))
  return jnp.mean(cross_entropy(logits, digits, label_smoothing)), {
      "nll": nll, "bits_per_token": nll / jnp.log(2.0), "accuracy": accuracy}
