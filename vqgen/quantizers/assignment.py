"""How a VQ batch is assigned to codes in training: the nearest code, OptVQ's optimal-transport plan, or a code
drawn from the Boltzmann distribution over distances (stochastic code sampling).

OptVQ (Zhang et al. 2024, "Preventing Local Pitfalls in Vector Quantization via Optimal Transport", arXiv
2412.15195): during training, the N vectors of a batch are matched to the K codes by an entropy-regularised
optimal transport with uniform marginals (every vector carries mass 1/N, every code receives 1/K), solved by
Sinkhorn-Knopp (Cuturi 2013); each vector takes the code its row of the plan weights most. A code far from every
vector still receives its share, so no code is left dead by a bad initialisation, and the assignment stays the
nearest code where the batch is spread like the codebook. At inference each vector takes its nearest code.

The cost is the Euclidean distance standardised over the whole [N, K] matrix and shifted to a minimum of 0 (the
source's normalize_mode='all'): C = (D - mean D) / std D - min(...). The plan is
P = diag(u) exp(-C / temperature) diag(v) with u, v from `iters` alternating rescalings of the codes' columns to
1/K and the vectors' rows to 1/N (the source: 5 iterations, epsilon = 1 / temperature = 10). Here in log space, so
a code whose every entry underflows exp() in float32 still gets a finite, normalised column.

Stochastic code sampling (vector-quantize-pytorch's stochastic_sample_codes, a regulariser): each vector takes a
code drawn from p(k | x) = softmax_k(-||x - c_k||^2 / temperature) by the Gumbel-max trick; the straight-through
gradient then passes through the drawn code. As the temperature goes to 0 it is the nearest code.

The nearest code without the [N, K] matrix (`nearest_indices` with chunk_size): the codes are scanned in blocks
of `chunk_size`, each block's distances reduced at once to a per-vector (minimum, argmin) that a running pair
keeps, so memory is O(N chunk_size + K d) however large K is, and each block's product stays in cache (faster than
one [N, K] product on CPU too; benchmarks/quantizers.py). Ties go to the lowest index, as in one argmin. Indices
carry no gradient, so no residual is kept for the backward pass: the straight-through and rotation gradients, the
losses and the EMA statistics need only the chosen codes, O(N d).
"""

import jax
import jax.numpy as jnp

ASSIGNMENTS = ("nearest", "optimal_transport", "sample")


def nearest_indices(x: jax.Array, codes: jax.Array, chunk_size: int = 0) -> jax.Array:
  """argmin_k ||x_n - c_k||^2 = argmin_k (||c_k||^2 - 2 x_n.c_k) for x [N, d], codes [K, d] -> int32 [N].

  chunk_size > 0 and < K: over blocks of chunk_size codes with a running minimum (the last block padded with
  codes at infinite norm, never chosen); otherwise one [N, K] product.
  """
  x, codes = jax.lax.stop_gradient(x), jax.lax.stop_gradient(codes)
  norms = jnp.sum(jnp.square(codes), -1)
  k = codes.shape[0]
  if not 0 < chunk_size < k:
    return jnp.argmin(norms[None, :] - 2.0 * x @ codes.T, -1).astype(jnp.int32)
  blocks = -(-k // chunk_size)
  pad = blocks * chunk_size - k
  codes = jnp.pad(codes, ((0, pad), (0, 0))).reshape(blocks, chunk_size, -1)
  norms = jnp.pad(norms, (0, pad), constant_values=jnp.inf).reshape(blocks, chunk_size)

  def block(carry, inputs):
    best, index = carry
    block_codes, block_norms, offset = inputs
    d = block_norms[None, :] - 2.0 * x @ block_codes.T
    i, m = jnp.argmin(d, -1).astype(jnp.int32), jnp.min(d, -1)
    better = m < best  # strict: an equal distance in a later block keeps the earlier (lower) index
    return (jnp.where(better, m, best), jnp.where(better, i + offset, index)), None

  init = (jnp.full(x.shape[:1], jnp.inf, x.dtype), jnp.zeros(x.shape[:1], jnp.int32))
  offsets = jnp.arange(blocks, dtype=jnp.int32) * chunk_size
  return jax.lax.scan(block, init, (codes, norms, offsets))[0][1]


def standardized_cost(squared_distances: jax.Array) -> jax.Array:
  """[N, K] squared distances -> OptVQ's cost: Euclidean distances standardised over the matrix, minimum 0."""
  d = jnp.sqrt(jnp.maximum(squared_distances, 0.0))
  c = (d - jnp.mean(d)) / (jnp.std(d) + 1e-6)
  return c - jnp.min(c)


def sinkhorn_log_plan(cost: jax.Array, iters: int, temperature: float) -> jax.Array:
  """log P of the entropic transport plan between N rows (mass 1/N each) and K columns (mass 1/K each) for
  `cost` [N, K]: log P = -cost / temperature, normalised to total mass 1, then `iters` times the columns rescaled
  to 1/K and the rows to 1/N (Sinkhorn-Knopp; the rows are rescaled last, so they hold exactly 1/N)."""
  n, k = cost.shape
  log_p = -cost.astype(jnp.float32) / temperature
  log_p = log_p - jax.nn.logsumexp(log_p)

  def rescale(log_p, _):
    log_p = log_p - jax.nn.logsumexp(log_p, axis=0, keepdims=True) - jnp.log(k)
    return log_p - jax.nn.logsumexp(log_p, axis=1, keepdims=True) - jnp.log(n), None

  return jax.lax.scan(rescale, log_p, None, length=iters)[0]


def optimal_transport_indices(squared_distances: jax.Array, iters: int, temperature: float) -> jax.Array:
  """OptVQ's training assignment: argmax over codes of each vector's row of the Sinkhorn plan, int32 [N]."""
  cost = standardized_cost(jax.lax.stop_gradient(squared_distances))
  return jnp.argmax(sinkhorn_log_plan(cost, iters, temperature), -1).astype(jnp.int32)


def sampled_indices(distances: jax.Array, temperature: float, key: jax.Array) -> jax.Array:
  """Codes drawn from softmax_k(-distances_nk / temperature) (any per-row constant in `distances`), int32 [N]."""
  logits = -jax.lax.stop_gradient(distances).astype(jnp.float32) / temperature
  return jnp.argmax(logits + jax.random.gumbel(key, logits.shape), -1).astype(jnp.int32)
