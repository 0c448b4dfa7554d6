"""Distances between sets of features: Frechet distance and k-NN precision / recall.

Frechet distance (Heusel et al. 2017) between Gaussians fitted to two feature sets, in float64:
  FD = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))
where tr (S_1 S_2)^(1/2) = tr (A S_2 A)^(1/2) with A = S_1^(1/2): the eigenvalues of a symmetric PSD matrix, so
nearly singular covariances (dead features, few samples) need no regulariser and give no complex parts.
Fewer points than dimensions (`frechet_distance_to_statistics`, N - 1 < D): S_1 = Y^T Y / (N - 1) with Y the
(N - 1) x D coordinates of the centred points in an orthonormal basis of the vectors orthogonal to (1, ..., 1), so
tr (A S_2 A)^(1/2) = sum of sqrt(eigenvalues of Y S_2 Y^T / (N - 1)) (the nonzero eigenvalues of S_2 S_1): an
(N - 1) x (N - 1) problem, without the round-off the D - N + 1 null directions of S_1 add under a square root.
Precision / recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls around its points with
radius the distance to the k-th nearest neighbour (k = 3) within the set; precision = fraction of generated
points inside the real manifold, recall = fraction of real points inside the generated manifold.
"""

import numpy as np


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  x = np.asarray(features, np.float64)
  return x.mean(0), np.cov(x, rowvar=False)


class GaussianAccumulator:
  """gaussian_statistics of rows added in chunks (a split too large to hold at once): float64 sums of x - c and
  (x - c)(x - c)^T about c = the first chunk's mean, so the covariance loses nothing to a large mean;
  sigma = (sum (x - c)(x - c)^T - n d d^T) / (n - 1) with d = mean(x) - c."""

  def __init__(self):
    self.n, self.shift, self.total, self.outer = 0, None, None, None

  def add(self, rows: np.ndarray) -> None:
    x = np.asarray(rows, np.float64)
    if self.shift is None:
      self.shift = x.mean(0)
      self.total, self.outer = np.zeros_like(self.shift), np.zeros((len(self.shift),) * 2)
    x = x - self.shift
    self.n += len(x)
    self.total += x.sum(0)
    self.outer += x.T @ x

  def statistics(self) -> tuple[np.ndarray, np.ndarray]:
    if self.n < 2:
      raise ValueError(f"A covariance needs at least 2 rows, got {self.n}.")
    d = self.total / self.n
    return self.shift + d, (self.outer - self.n * np.outer(d, d)) / (self.n - 1)


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


def _helmert(n: int) -> np.ndarray:
  """(n - 1) x n orthonormal rows orthogonal to (1, ..., 1): row k is (1, ..., 1, -k, 0, ...) / sqrt(k (k + 1))."""
  h = np.tril(np.ones((n - 1, n)), 0)
  k = np.arange(1, n)
  h[k - 1, k] = -k
  return h / np.sqrt(k * (k + 1.0))[:, None]


def frechet_distance_to_statistics(features: np.ndarray, mu2, sigma2) -> float:
  """Frechet distance between the Gaussian fitted to `features` [N, D] and (mu2, sigma2); with N - 1 < D through
  the (N - 1) x (N - 1) eigenproblem of the module docstring (exact where frechet_distance loses ~1e-6 of tr S
  to the null directions), otherwise frechet_distance."""
  x = np.asarray(features, np.float64)
  n, d = x.shape
  if n - 1 >= d:
    return frechet_distance(*gaussian_statistics(x), mu2, sigma2)
  mu1, mu2, sigma2 = x.mean(0), np.asarray(mu2, np.float64), np.asarray(sigma2, np.float64)
  y = _helmert(n) @ (x - mu1)
  m = y @ sigma2 @ y.T / (n - 1)
  trace_covmean = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0.0, None)))
  diff = mu1 - mu2
  return float(diff @ diff + np.sum(y * y) / (n - 1) + np.trace(sigma2) - 2.0 * trace_covmean)


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
