"""Codebook regularisers of a learned VQ codebook (added to the quantizer's losses in training).

orthogonal  Orthogonal codebook regularisation (Lee et al. 2022, TIQ, arXiv 2112.00384, eq. 2):
            L = ||l2(C) l2(C)^T - I||_F^2 / n^2 over the n codes C taken: the mean squared cosine similarity of
            distinct codes (0 for orthonormal codes, 1 - 1/n for n equal ones). The paper's weight is 10. Options:
            only the codes the batch uses (`active`: the others masked out, n = the number used) and at most
            `max_codes` codes drawn at random each step (memory O(max_codes^2) for any K).
diversity   Codebook diversity: -H(mean_n p_n) with p_n = softmax_k(-||x_n - c_k||^2 / temperature), the
            entropy of the batch's soft code marginal (the codebook half of the MAGVIT entropy loss, without its
            per-sample term; vector-quantize-pytorch's codebook_diversity_loss, temperature 1/100).
"""

import jax
import jax.numpy as jnp

from vqgen.quantizers.base import l2_normalize
from vqgen.quantizers.entropy import categorical_entropies


def orthogonal_loss(codes: jax.Array, active: jax.Array | None = None) -> jax.Array:
  """TIQ eq. 2 over the rows of `codes` [n, d], or over the rows where `active` [n] (bool) is set."""
  normed = l2_normalize(codes.astype(jnp.float32))
  off_diagonal = jnp.square(normed @ normed.T) * (1.0 - jnp.eye(codes.shape[0]))
  if active is None:
    return jnp.sum(off_diagonal) / codes.shape[0] ** 2
  mask = active.astype(jnp.float32)
  n = jnp.maximum(jnp.sum(mask), 1.0)
  return jnp.sum(off_diagonal * mask[:, None] * mask[None, :]) / n ** 2


def sampled_orthogonal_loss(codes: jax.Array, indices: jax.Array, *, active_only: bool, max_codes: int,
                            key: jax.Array | None) -> jax.Array:
  """The orthogonal loss of a VQ codebook [K, d] in training: over the codes this batch's `indices` use
  (active_only) and over `max_codes` codes drawn without replacement when 0 < max_codes < K."""
  k = codes.shape[0]
  active = jnp.zeros((k,), bool).at[indices.reshape(-1)].set(True) if active_only else None
  if 0 < max_codes < k:
    pick = jax.random.permutation(key, k)[:max_codes]
    codes, active = codes[pick], None if active is None else active[pick]
  return orthogonal_loss(codes, active)


def diversity_loss(neg_scaled_distances: jax.Array) -> jax.Array:
  """-H(mean_n softmax(logits_n)) for logits [N, K] = -||x_n - c_k||^2 / temperature (any per-row constant)."""
  return -categorical_entropies(neg_scaled_distances)[1]
