"""Vector quantization with a learned codebook (VQ-VAE, van den Oord et al. 2017) and its modern fixes.

Nearest code by squared distance, argmin_k ||z - c_k||^2 (never through a sqrt). Losses (VQ-VAE eq. 3, with both
weights named; taming's "legacy" form swaps which term beta multiplies):

  codebook   = codebook_weight   * mean ||sg(z) - q||^2     (only when the codebook learns by gradient)
  commitment = commitment_weight * mean ||z - sg(q)||^2     (beta = 0.25)

Options, each opt-in and named after its paper:
  gradient   'ste' | 'rotation' | 'gumbel' | 'ibq' (quantizers/estimators.py); Gumbel samples over
             -distances / gumbel_temperature in training and takes the nearest code in evaluation
  learning   'gradient' the codebook is a parameter
             'ema'      exponential moving averages of counts and sums (VQ-VAE appendix; decay 0.99, Laplace eps)
             'alternating'  the codebook takes its own SGD-momentum step on the batch before the encoder's
                        (alternating_lr, alternating_momentum; straightening the STE, quantizers/straightening.py)
  affine_lr, affine_groups  the STE-straightening affine reparameterisation c = (1 + r s_g) w + r b_g with learned
                per-group s, b (r = affine_lr; 0 is off); sync_nu  its synchronised commitment, nu (q - sg(q))
  cosine     l2-normalised z and codes (ViT-VQGAN), distances become -2 cos + 2
  codebook_dim  a low-dimensional lookup space with linear in/out projections (factorized codes, ViT-VQGAN)
  kmeans_init   the codebook becomes k-means centroids of the first training batch (quantizers/clustering.py)
  cvq_anchor    CVQ's online clustered codebook (Zheng & Vedaldi 2023): each step, codes pulled towards batch
                features ('closest', 'random' or 'probrandom' anchors) by exp(-10 K p_k / (1 - decay)) of their
                running usage p_k, so dead codes jump onto the data (quantizers/clustering.py)
  A codebook learned by gradient that the forward pass rewrites (k-means, CVQ) is W + O: the optimizer owns W,
  the forward pass sets the state O, so a rewrite survives the training step (which keeps only W's update).
  dead_code_threshold  codes whose EMA count falls below threshold * (tokens per batch / K) are replaced by random
                batch vectors and their EMA statistics reset (needs learning='ema')
  feature_dim  VQGAN-LC (Zhu et al. 2024, arXiv 2406.11837): codes P(C) with C [K, feature_dim] a frozen codebook
                of a pretrained network's features (k-means centres; filled before training from the file that
                `python -m vqgen.cli.feature_codebook` writes, then checkpointed with the model) and P a trained
                Linear(feature_dim, codebook_dim) with bias, weight ~ N(0, 1/codebook_dim) (the source's projector).
                C is stored centred and scaled to a root-mean-square norm of 1, an affine map the projector absorbs,
                so the first codes have the latents' scale (raw perceptual features have norms ~40: every latent
                then took one code, the collapse SimVQ's N(0, 1/d) basis avoids; docs/results.md)
  simvq      SimVQ (Zhu et al. 2024): a frozen random codebook C ~ N(0, 1/d) and a learned linear map W;
             codes = C W. The 1/d scale matters: with C ~ N(0, 1) the initial codes are sqrt(d) times longer than
             the encoder's latents, the few shortest codes win every argmin and usage collapses (3.5% of 2^10
             codes on Fashion-MNIST against 94% with N(0, 1/d), docs/results.md)
  entropy_weight  w * (mean_n H(p_n) - H(mean_n p_n)) with p_n = softmax(-||x_n - c||^2 / entropy_temperature):
                confident assignments, evenly used codebook (the MAGVIT / LFQ regulariser on a learned codebook)
  assignment 'nearest'  argmin distance
             'optimal_transport'  OptVQ (Zhang et al. 2024): in training, the batch's Sinkhorn plan to the codes
                        with uniform marginals (sinkhorn_iters, sinkhorn_temperature; quantizers/assignment.py);
                        the nearest code at inference
             'sample'   stochastic code sampling: in training a code drawn from softmax(-||x - c||^2 /
                        sample_temperature); the nearest at inference
  orthogonal_weight  TIQ's orthogonal codebook regularisation (quantizers/regularizers.py; paper weight 10), over
                the codes the batch uses (orthogonal_active_only) and at most orthogonal_max_codes random ones
  chunk_size  the nearest code is found over blocks of chunk_size codes with a running minimum, never forming the
                [N, K] distance matrix (quantizers/assignment.py); 0 for one [N, K] product. Options that need
                the whole matrix in training (entropy, diversity, Gumbel, optimal transport, sampling) form it
  diversity_weight  -H(mean_n softmax(-||x_n - c||^2 / diversity_temperature)): the batch's code marginal spread
                out (the codebook half of the entropy loss alone)
"""

import math

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.quantizers.assignment import ASSIGNMENTS, nearest_indices, optimal_transport_indices, sampled_indices
from vqgen.quantizers.base import QuantizerOutput, batch_metrics, l2_normalize
from vqgen.quantizers.clustering import ANCHORS, anchors, kmeans, reanchored, usage_update
from vqgen.quantizers.entropy import categorical_entropies
from vqgen.quantizers.estimators import (GRADIENTS, gumbel_straight_through, index_backpropagation, rotation_trick,
                                         straight_through)
from vqgen.quantizers.regularizers import diversity_loss, sampled_orthogonal_loss
from vqgen.quantizers.straightening import affine_codes, alternating_step, inverse_affine_codes, synchronized

LEARNING = ("gradient", "ema", "alternating")


class CodebookStat(nnx.Variable):
  """Codebook statistics updated in the forward pass (EMA counts and sums, init flags); never optimized."""


def standardized_features(features: jax.Array) -> jax.Array:
  """Feature centres [K, F] centred and scaled to a root-mean-square row norm of 1 (VQGAN-LC's frozen basis)."""
  centred = features - jnp.mean(features, 0, keepdims=True)
  return centred / jnp.maximum(jnp.sqrt(jnp.mean(jnp.sum(jnp.square(centred), -1))), 1e-12)


class VQ(nnx.Module):
  """Nearest-neighbour vector quantizer over the last axis (size `dim`) of z."""

  def __init__(self, dim: int, codebook_size: int, *, codebook_dim: int | None = None,
               commitment_weight: float = 0.25, codebook_weight: float = 1.0, gradient: str = "ste",
               learning: str = "gradient", decay: float = 0.99, eps: float = 1e-5, cosine: bool = False,
               kmeans_init: bool = False, kmeans_iters: int = 10, dead_code_threshold: float = 0.0,
               simvq: bool = False, gumbel_temperature: float = 1.0, entropy_weight: float = 0.0,
               entropy_temperature: float = 0.01, assignment: str = "nearest", sinkhorn_iters: int = 5,
               sinkhorn_temperature: float = 0.1, sample_temperature: float = 1.0, orthogonal_weight: float = 0.0,
               orthogonal_max_codes: int = 0, orthogonal_active_only: bool = False, diversity_weight: float = 0.0,
               diversity_temperature: float = 0.01, chunk_size: int = 256, cvq_anchor: str | None = None,
               affine_lr: float = 0.0, affine_groups: int = 1, sync_nu: float = 0.0, alternating_lr: float = 50.0,
               alternating_momentum: float = 0.9, feature_dim: int = 0, rngs: nnx.Rngs):
    if dim < 1 or codebook_size < 2:
      raise ValueError(f"VQ needs dim >= 1 and codebook_size >= 2, got dim={dim}, codebook_size={codebook_size}.")
    if codebook_size >= 2**31:
      raise ValueError(f"VQ codebook_size {codebook_size} exceeds the int32 index range.")
    if gradient not in GRADIENTS:
      raise ValueError(f"VQ gradient must be one of {GRADIENTS}, got {gradient!r}.")
    if learning not in LEARNING:
      raise ValueError(f"VQ learning must be one of {LEARNING}, got {learning!r}.")
    if feature_dim < 0 or (feature_dim and simvq):
      raise ValueError(f"VQ feature_dim (VQGAN-LC) must be >= 0 and not with simvq, got {feature_dim}, {simvq}.")
    frozen = simvq or feature_dim > 0  # a frozen basis C and a learned map: SimVQ, VQGAN-LC
    if learning != "gradient" and (frozen or gradient == "ibq"):
      raise ValueError(f"learning={learning!r} moves codes outside the optimizer; SimVQ, VQGAN-LC and IBQ learn "
                       "the codebook by gradient: use learning='gradient' with them.")
    if affine_lr < 0 or affine_groups < 1 or codebook_size % affine_groups or sync_nu < 0:
      raise ValueError(f"VQ needs affine_lr >= 0, sync_nu >= 0 and affine_groups >= 1 dividing codebook_size "
                       f"{codebook_size}, got {affine_lr}, {sync_nu}, {affine_groups}.")
    if (affine_lr or sync_nu) and (learning == "ema" or frozen):
      raise ValueError("affine_lr and sync_nu act through gradients to the codebook: not with learning='ema' "
                       "(running averages) or SimVQ / VQGAN-LC (a learned map of their own).")
    if alternating_lr <= 0 or not 0 <= alternating_momentum < 1:
      raise ValueError(f"VQ needs alternating_lr > 0 and alternating_momentum in [0, 1), got {alternating_lr}, "
                       f"{alternating_momentum}.")
    if not 0.0 < decay < 1.0:
      raise ValueError(f"VQ EMA decay must be in (0, 1), got {decay}.")
    if dead_code_threshold < 0.0:
      raise ValueError(f"dead_code_threshold must be >= 0, got {dead_code_threshold}.")
    if dead_code_threshold > 0.0 and learning != "ema":
      raise ValueError("dead_code_threshold needs learning='ema' (the restart rewrites codes and their EMA "
                       "statistics outside the optimizer).")
    if dead_code_threshold >= 1.0:
      raise ValueError(f"dead_code_threshold={dead_code_threshold} is relative to the average count per code "
                       "(tokens per batch / K); counts sum to the tokens, so at >= 1 some code is always below "
                       "it and restarts never stop. Use a value in (0, 1), e.g. 0.1.")
    if kmeans_init and frozen:
      raise ValueError("kmeans_init does not apply to SimVQ or VQGAN-LC, whose codebook basis is frozen.")
    if entropy_weight < 0 or entropy_temperature <= 0:
      raise ValueError(f"VQ needs entropy_weight >= 0 and entropy_temperature > 0, got {entropy_weight}, "
                       f"{entropy_temperature}.")
    if gumbel_temperature <= 0:
      raise ValueError(f"gumbel_temperature must be > 0, got {gumbel_temperature}.")
    if assignment not in ASSIGNMENTS:
      raise ValueError(f"VQ assignment must be one of {ASSIGNMENTS}, got {assignment!r}.")
    if assignment != "nearest" and gradient == "gumbel":
      raise ValueError(f"assignment={assignment!r} picks the codes itself; gradient='gumbel' samples them: "
                       "use one of the two.")
    if sample_temperature <= 0:
      raise ValueError(f"VQ sample_temperature must be > 0, got {sample_temperature}.")
    if orthogonal_weight < 0 or orthogonal_max_codes < 0 or diversity_weight < 0 or diversity_temperature <= 0:
      raise ValueError("VQ needs orthogonal_weight, orthogonal_max_codes, diversity_weight >= 0 and "
                       f"diversity_temperature > 0, got {orthogonal_weight}, {orthogonal_max_codes}, "
                       f"{diversity_weight}, {diversity_temperature}.")
    if orthogonal_weight > 0 and learning == "ema":
      raise ValueError("orthogonal_weight regularises a codebook learned by gradient; learning='ema' moves codes "
                       "by running averages that no loss reaches: use learning='gradient'.")
    if sinkhorn_iters < 1 or sinkhorn_temperature <= 0:
      raise ValueError(f"VQ needs sinkhorn_iters >= 1 and sinkhorn_temperature > 0, got {sinkhorn_iters}, "
                       f"{sinkhorn_temperature}.")
    if cvq_anchor is not None and cvq_anchor not in ANCHORS:
      raise ValueError(f"VQ cvq_anchor must be None or one of {ANCHORS}, got {cvq_anchor!r}.")
    if cvq_anchor is not None and (learning != "gradient" or frozen):
      raise ValueError("cvq_anchor re-anchors a codebook learned by gradient (CVQ-VAE); use learning='gradient' "
                       "without simvq or feature_dim (learning='ema' has dead_code_threshold for restarts).")
    if chunk_size < 0:
      raise ValueError(f"VQ chunk_size must be >= 0 (0: one [N, K] distance matrix), got {chunk_size}.")
    self.dim, self.codebook_size, self.chunk_size, self.cvq_anchor = dim, codebook_size, chunk_size, cvq_anchor
    self.affine_lr, self.sync_nu, self.feature_dim, self.frozen_basis = affine_lr, sync_nu, feature_dim, frozen
    self.alternating_lr, self.alternating_momentum = alternating_lr, alternating_momentum
    self.codebook_dim = codebook_dim or dim
    self.commitment_weight, self.codebook_weight = commitment_weight, codebook_weight
    self.gradient, self.learning, self.decay, self.eps = gradient, learning, decay, eps
    self.cosine, self.kmeans_init, self.kmeans_iters = cosine, kmeans_init, kmeans_iters
    self.dead_code_threshold, self.simvq, self.gumbel_temperature = dead_code_threshold, simvq, gumbel_temperature
    self.entropy_weight, self.entropy_temperature = entropy_weight, entropy_temperature
    self.assignment, self.sinkhorn_iters, self.sinkhorn_temperature = assignment, sinkhorn_iters, sinkhorn_temperature
    self.sample_temperature = sample_temperature
    self.orthogonal_weight, self.orthogonal_max_codes = orthogonal_weight, orthogonal_max_codes
    self.orthogonal_active_only = orthogonal_active_only
    self.diversity_weight, self.diversity_temperature = diversity_weight, diversity_temperature
    d, k = self.codebook_dim, codebook_size
    if self.codebook_dim != dim:
      self.project_in = nnx.Linear(dim, d, rngs=rngs)
      self.project_out = nnx.Linear(d, dim, rngs=rngs)
    else:
      self.project_in = self.project_out = None
    init = jax.random.normal(rngs.params(), (k, d)) / math.sqrt(d)
    if simvq:
      self.frozen_codebook = CodebookStat(init)
      self.codebook_map = nnx.Linear(d, d, use_bias=False, rngs=rngs)
    elif feature_dim:  # C is a placeholder until the stage fills it with the feature centres
      self.frozen_codebook = CodebookStat(jnp.zeros((k, feature_dim)))
      self.codebook_map = nnx.Linear(feature_dim, d, kernel_init=nnx.initializers.normal(d**-0.5), rngs=rngs)
    elif learning == "ema":
      self.codebook = CodebookStat(init)
      self.ema_count = CodebookStat(jnp.ones((k,)))
      self.ema_sum = CodebookStat(init)
    elif learning == "alternating":
      self.codebook = CodebookStat(init)
      self.codebook_momentum = CodebookStat(jnp.zeros((k, d)))
    else:
      self.codebook = nnx.Param(init)
      if kmeans_init or cvq_anchor:  # the rewrite O of W + O (module docstring)
        self.codebook_offset = CodebookStat(jnp.zeros((k, d)))
    if cvq_anchor:
      self.usage = CodebookStat(jnp.zeros((k,)))  # CVQ's running usage p_k
    if affine_lr:
      self.affine_scale = nnx.Param(jnp.zeros((affine_groups, d)))
      self.affine_bias = nnx.Param(jnp.zeros((affine_groups, d)))
    self.initialized = CodebookStat(jnp.array(not kmeans_init))
    sampled_orthogonal = orthogonal_weight > 0 and 0 < orthogonal_max_codes < codebook_size
    self.rngs = rngs if (gradient == "gumbel" or dead_code_threshold > 0 or kmeans_init or sampled_orthogonal
                         or assignment == "sample" or cvq_anchor in ("random", "probrandom")) else None

  def raw_codes(self) -> jax.Array:
    """The codebook [K, codebook_dim] before cosine normalisation: C W (SimVQ), else the affine map (when on) of
    W + O (rewritten) or W."""
    if self.frozen_basis:
      return self.codebook_map(self.frozen_codebook[...])
    w = self.codebook[...]
    return self._affine(w + self.codebook_offset[...] if hasattr(self, "codebook_offset") else w)

  def set_feature_codebook(self, features) -> None:
    """VQGAN-LC: fills the frozen codebook C with `features` [codebook_size, feature_dim] (k-means centres)."""
    expected = (self.codebook_size, self.feature_dim)
    if not self.feature_dim:
      raise ValueError("set_feature_codebook is for VQGAN-LC: build the VQ with feature_dim > 0.")
    if tuple(features.shape) != expected:
      raise ValueError(f"The feature codebook has shape {tuple(features.shape)}; this VQ needs {expected} "
                       "(codebook_size, feature_dim): make one with that many centres of that network's features.")
    features = jnp.asarray(features, jnp.float32)
    if not bool(jnp.all(jnp.isfinite(features))):
      raise ValueError("The feature codebook holds NaN or Inf values.")
    self.frozen_codebook[...] = standardized_features(features)

  def _affine(self, w: jax.Array) -> jax.Array:
    return affine_codes(w, self.affine_scale[...], self.affine_bias[...], self.affine_lr) if self.affine_lr else w

  def set_raw_codes(self, codes: jax.Array) -> None:
    """Rewrites the codebook from the forward pass: a state codebook directly, a gradient one through O."""
    if self.affine_lr:
      codes = inverse_affine_codes(codes, self.affine_scale[...], self.affine_bias[...], self.affine_lr)
    codes = jax.lax.stop_gradient(codes)
    if self.learning == "gradient":
      self.codebook_offset[...] = codes - jax.lax.stop_gradient(self.codebook[...])
    else:
      self.codebook[...] = codes

  def codes(self) -> jax.Array:
    """The current codebook [K, codebook_dim] in lookup space (normalised when cosine)."""
    c = self.raw_codes()
    return l2_normalize(c) if self.cosine else c

  def indices_to_codes(self, indices: jax.Array) -> jax.Array:
    """Int indices [...] -> codes [..., dim] in the input space (after the out-projection)."""
    q = jnp.take(self.codes(), indices.astype(jnp.int32), axis=0)
    return self.project_out(q) if self.project_out is not None else q

  def codes_to_indices(self, codes: jax.Array) -> jax.Array:
    """Codes [..., dim] as `indices_to_codes` returns them -> int32 indices [...] of the nearest such code."""
    table = self.indices_to_codes(jnp.arange(self.codebook_size))
    flat = codes.astype(jnp.float32).reshape(-1, self.dim)
    return nearest_indices(flat, table, self.chunk_size).reshape(codes.shape[:-1])

  def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
    if z.shape[-1] != self.dim:
      raise ValueError(f"VQ(dim={self.dim}) expects {self.dim} channels last, got shape {z.shape}.")
    shape = z.shape[:-1]
    x = z.astype(jnp.float32)
    if self.project_in is not None:
      x = self.project_in(x)
    x = (l2_normalize(x) if self.cosine else x).reshape(-1, self.codebook_dim)
    if train and self.kmeans_init:
      self._kmeans_init(jax.lax.stop_gradient(x))
    codes = self.codes()
    distances = None
    if train and (self.assignment != "nearest" or self.entropy_weight or self.diversity_weight
                  or self.gradient == "gumbel"):
      # ||x||^2 is constant per row: argmin and the softmaxes only need ||c||^2 - 2 x.c.
      distances = jnp.sum(jnp.square(codes), -1)[None, :] - 2.0 * x @ codes.T
    if distances is None:
      indices = nearest_indices(x, codes, self.chunk_size)
    elif self.assignment == "optimal_transport":
      squared = distances + jnp.sum(jnp.square(x), -1, keepdims=True)
      indices = optimal_transport_indices(squared, self.sinkhorn_iters, self.sinkhorn_temperature)
    elif self.assignment == "sample":
      indices = sampled_indices(distances, self.sample_temperature, self.rngs())
    else:
      indices = jnp.argmin(distances, -1).astype(jnp.int32)
    if train and self.learning == "alternating":
      self._alternating_step(x, indices)
      codes = self.codes()
    q = jnp.take(codes, indices, axis=0)
    losses = {"commitment": self.commitment_weight * jnp.mean(jnp.square(x - jax.lax.stop_gradient(q)))}
    if (self.learning == "gradient" or self.affine_lr) and self.gradient != "gumbel":
      losses["codebook"] = self.codebook_weight * jnp.mean(jnp.square(jax.lax.stop_gradient(x) - q))
    metrics = {}
    if train and self.entropy_weight:
      sample, codebook = categorical_entropies(-distances / self.entropy_temperature)
      losses["entropy"] = self.entropy_weight * (sample - codebook)
      metrics = {"sample_entropy": sample, "codebook_entropy": codebook}
    if train and self.diversity_weight:
      losses["diversity"] = self.diversity_weight * diversity_loss(-distances / self.diversity_temperature)
    if train and self.orthogonal_weight:
      losses["orthogonal"] = self.orthogonal_weight * sampled_orthogonal_loss(
          codes, indices, active_only=self.orthogonal_active_only, max_codes=self.orthogonal_max_codes,
          key=self.rngs() if self.rngs is not None else None)
    quantized = synchronized(self._estimator(x, q, codes, distances, indices, train), q, self.sync_nu)
    if train and self.learning == "ema":
      self._ema_update(jax.lax.stop_gradient(x), indices)
    if train and self.cvq_anchor:
      self._reanchor(x, indices)
    if self.project_out is not None:
      quantized = self.project_out(quantized)
    indices = indices.reshape(shape)
    return QuantizerOutput(quantized.reshape(shape + (self.dim,)), indices, losses,
                           {**batch_metrics(indices, self.codebook_size), **metrics})

  def _estimator(self, x, q, codes, distances, indices, train):
    if self.gradient == "rotation":
      return rotation_trick(x, q)
    if self.gradient == "ibq":
      return index_backpropagation(x, codes, indices)
    if self.gradient == "gumbel" and train:
      return gumbel_straight_through(-distances / self.gumbel_temperature, codes, self.rngs())
    return straight_through(x, q)

  def _alternating_step(self, x, indices):
    """The codebook's own step before the encoder's (straightening.py), with the batch's indices kept."""
    lookup = lambda w: l2_normalize(self._affine(w)) if self.cosine else self._affine(w)
    self.codebook[...], self.codebook_momentum[...] = alternating_step(
        self.codebook[...], self.codebook_momentum[...], lookup, x, indices, self.alternating_lr,
        self.alternating_momentum)

  def _reanchor(self, x, indices):
    """CVQ (clustering.py): usage p <- decay p + (1 - decay) n / N, then e <- (1 - alpha) e + alpha anchor."""
    self.usage[...] = usage_update(self.usage[...], indices, self.decay)
    raw = jax.lax.stop_gradient(self.raw_codes())
    anchor = anchors(x, raw, self.cvq_anchor, self.rngs() if self.rngs is not None else None, self.cosine,
                     self.chunk_size)
    self.set_raw_codes(reanchored(raw, self.usage[...], anchor, self.decay))

  def _kmeans_init(self, x):
    """Replaces the codebook by k-means centroids of this batch, once (then `initialized` is set).

    `lax.cond` runs k-means only on the first training call; later calls pay nothing for it.
    """
    key = self.rngs()
    ema = self.learning == "ema"
    current = (self.raw_codes(), self.ema_sum[...] if ema else self.codebook[...],
               self.ema_count[...] if ema else jnp.ones((self.codebook_size,)))

    def fit(_):
      centroids, counts = kmeans(x, self.codebook_size, self.kmeans_iters, key)
      counts = jnp.maximum(counts, 1.0)
      return centroids, centroids * counts[:, None], counts

    codebook, ema_sum, ema_count = jax.lax.cond(self.initialized[...], lambda _: current, fit, None)
    self.set_raw_codes(codebook)
    if ema:
      self.ema_sum[...], self.ema_count[...] = ema_sum, ema_count
    self.initialized[...] = jnp.array(True)

  def _ema_update(self, x, indices):
    """VQ-VAE appendix A.1: N_k <- g N_k + (1-g) n_k;  m_k <- g m_k + (1-g) sum_{i:k} x_i;  e_k = m_k / N~_k.

    N~ is Laplace-smoothed: (N_k + eps) / (sum N + K eps) * sum N. Then dead codes (count below
    threshold * tokens / K) are restarted at random batch vectors with their statistics reset.
    """
    k, g = self.codebook_size, self.decay
    # Per-code counts and sums by scatter-add: O(N d), no [N, K] one-hot.
    count = g * self.ema_count[...] + (1 - g) * jnp.bincount(indices, length=k).astype(jnp.float32)
    total = g * self.ema_sum[...] + (1 - g) * jax.ops.segment_sum(x, indices, num_segments=k)
    n = count.sum()
    smoothed = (count + self.eps) / (n + k * self.eps) * n
    codebook = total / smoothed[:, None]
    if self.dead_code_threshold > 0:
      expected = x.shape[0] / k
      dead = count < self.dead_code_threshold * expected
      picks = x[jax.random.randint(self.rngs(), (k,), 0, x.shape[0])]
      codebook = jnp.where(dead[:, None], picks, codebook)
      # Reset: the restarted code starts with one expected batch count at its new position.
      count = jnp.where(dead, expected, count)
      total = jnp.where(dead[:, None], picks * expected, total)
    self.ema_count[...], self.ema_sum[...], self.codebook[...] = count, total, codebook
