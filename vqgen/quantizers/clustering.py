"""Codebooks placed by clustering the encoder's features: k-means initialisation, and CVQ's online clustered
codebook.

CVQ (Zheng & Vedaldi 2023, "Online Clustered Codebook", ICCV; arXiv 2307.15139, Sec. 3.2): a code's usage is a
running average of the fraction of the batch assigned to it, p_k <- g p_k + (1 - g) n_k / N (g = 0.99), and every
training step pulls each code towards an anchor, a feature of the current batch,

  e_k <- (1 - alpha_k) e_k + alpha_k a_k,   alpha_k = exp(-p_k K 10 / (1 - g) - 1e-3)   (the source's constants),

so a code used at the average rate 1/K has alpha ~ e^-1000 and is left to the gradient, while a dead code
(p_k -> 0) jumps onto its anchor (alpha ~ 1). Anchors (the source's three samplers):
  closest     the batch feature nearest to the code (the paper's default)
  random      a batch feature drawn uniformly (the source's feature pool, when the batch holds more features
              than there are codes)
  probrandom  a batch feature drawn with probability softmax_n(similarity(x_n, e_k)) (cosine similarity for a
              cosine codebook, -||x_n - e_k||^2 otherwise)
The codebook is learned by gradient, and the source rewrites it in place before the optimizer step. Here the
code is e = W + O with W the parameter and O a state the forward pass sets to (1 - alpha) e + alpha a - W: after
the optimizer moves W by its step, e is (1 - alpha) e + alpha a + step, which is the source's update exactly.
"""

import jax
import jax.numpy as jnp

from vqgen.quantizers.assignment import nearest_indices
from vqgen.quantizers.base import l2_normalize, squared_distances

ANCHORS = ("closest", "random", "probrandom")


def kmeans(x: jax.Array, k: int, iters: int, key: jax.Array, seeding: str = "kmeans++",
           chunk_size: int = 256) -> tuple[jax.Array, jax.Array]:
  """Lloyd's k-means on x [N, d]; empty clusters keep their centroid. Returns (centroids [k, d], counts [k]).

  seeding 'kmeans++' (Arthur & Vassilvitskii 2007: k sequential draws, each O(N d)) or 'random' (k distinct rows
  of x, for large k). Memory O(N + k d + N chunk_size): assignments by the chunked nearest-code search, counts and
  sums by segment sums.
  """
  if seeding == "random":
    centroids = x[jax.random.choice(key, x.shape[0], (k,), replace=False)]
  elif seeding == "kmeans++":
    first_key, seed_key = jax.random.split(key)
    first = x[jax.random.randint(first_key, (), 0, x.shape[0])]
    centroids = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    min_dist = jnp.sum(jnp.square(x - first), -1)

    def seed(i, carry):  # the next centre is x_n with probability proportional to D(x_n)^2
      centroids, min_dist = carry
      pick = jax.random.categorical(jax.random.fold_in(seed_key, i), jnp.log(jnp.maximum(min_dist, 1e-30)))
      centroids = centroids.at[i].set(x[pick])
      return centroids, jnp.minimum(min_dist, jnp.sum(jnp.square(x - x[pick]), -1))

    centroids, _ = jax.lax.fori_loop(1, k, seed, (centroids, min_dist))
  else:
    raise ValueError(f"k-means seeding must be 'kmeans++' or 'random', got {seeding!r}.")

  def step(centroids, _):
    assign = nearest_indices(x, centroids, chunk_size)
    counts = jnp.bincount(assign, length=k).astype(x.dtype)
    sums = jax.ops.segment_sum(x, assign, num_segments=k)
    new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centroids)
    return new, counts

  centroids, counts = jax.lax.scan(step, centroids, None, length=iters)
  return centroids, counts[-1]


def usage_update(usage: jax.Array, indices: jax.Array, decay: float) -> jax.Array:
  """CVQ's running usage: p_k <- decay p_k + (1 - decay) (fraction of the batch assigned to code k)."""
  counts = jnp.bincount(indices.reshape(-1), length=usage.shape[0]).astype(jnp.float32)
  return decay * usage + (1.0 - decay) * counts / indices.size


def anchor_weights(usage: jax.Array, decay: float) -> jax.Array:
  """alpha_k = exp(-p_k K 10 / (1 - decay) - 1e-3) [K]: ~1 for an unused code, ~0 for one used at rate 1/K."""
  return jnp.exp(-usage * usage.shape[0] * 10.0 / (1.0 - decay) - 1e-3)


def anchors(x: jax.Array, codes: jax.Array, kind: str, key: jax.Array | None, cosine: bool = False,
            chunk_size: int = 0) -> jax.Array:
  """One batch feature per code, [K, d], chosen from x [N, d] by the sampler `kind` (ANCHORS)."""
  x, codes = jax.lax.stop_gradient(x), jax.lax.stop_gradient(codes)
  if kind == "closest":  # the roles of the nearest-code search swapped: each code's nearest feature
    picks = nearest_indices(l2_normalize(codes) if cosine else codes, l2_normalize(x) if cosine else x,
                            chunk_size)
  elif kind == "random":
    picks = jax.random.randint(key, codes.shape[:1], 0, x.shape[0])
  elif kind == "probrandom":
    similarity = l2_normalize(codes) @ l2_normalize(x).T if cosine else -squared_distances(codes, x)
    picks = jax.random.categorical(key, similarity, axis=-1)
  else:
    raise ValueError(f"CVQ anchor must be one of {ANCHORS}, got {kind!r}.")
  return x[picks]


def reanchored(codes: jax.Array, usage: jax.Array, anchor: jax.Array, decay: float) -> jax.Array:
  """CVQ's update (1 - alpha) e + alpha a of the codes [K, d] towards their anchors."""
  alpha = anchor_weights(usage, decay)[:, None]
  return (1.0 - alpha) * codes + alpha * anchor
