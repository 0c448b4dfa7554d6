"""Distances between sets of features: Frechet distance and k-NN precision / recall.

Frechet distance (Heusel et al. 2017) between Gaussians fitted to two feature sets, in float64:
  FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))
where tr (S_1 S_2)^(1/2) = tr (A S_2 A)^(1/2) with A = S_1^(1/2): the eigenvalues of a symmetric PSD matrix, so
nearly singular covariances (dead features, few samples) need no regulariser and give no complex parts.
Precision / recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls around its points with
radius the distance to the k-th nearest neighbour (k = 3) within the set; precision = fraction of generated
points inside the real manifold, recall = fraction of real points inside the generated manifold.
"""

import numpy as np


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(features, np.float64)
  return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  a = _sqrt_psd(sigma1)
  m = a @ sigma2 @ a
  trace_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)))
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
  """Symmetric square root of a covariance (eigenvalues below 0 are round-off and clipped)."""
  w, v = np.linalg.eigh((s + s.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def feature_frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  return frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b))


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.maximum((a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None, :], 0.0)


def knn_radii(x: np.ndarray, k: int = 3, chunk: int = 2048) -> np.ndarray:
  """Squared distance from each point to its k-th nearest neighbour in x (itself excluded)."""
  x = np.asarray(x, np.float64)
  out = np.empty(len(x))
  for i in range(0, len(x), chunk):
    d = _pairwise_sq(x[i:i + chunk], x)
    out[i:i + chunk] = np.partition(d, k, axis=1)[:, k]  # column 0 of the sorted row is the point itself
  return out


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int = 2048) -> float:
  """Fraction of `points` within radius of at least one centre."""
  inside = [np.any(_pairwise_sq(points[i:i + chunk], centres) <= radii[None, :], 1)
            for i in range(0, len(points), chunk)]
  return float(np.mean(np.concatenate(inside)))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
  real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
  return (_coverage(fake, real, knn_radii(real, k)), _coverage(real, fake, knn_radii(fake, k)))
