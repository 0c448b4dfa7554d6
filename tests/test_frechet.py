"""Frechet distance and k-NN precision/recall against closed forms and brute force."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from vqgen.evaluation import frechet


def test_frechet_distance_equals_the_gaussian_closed_form():
  # Covariances sharing eigenvectors: (S1 S2)^(1/2) = Q sqrt(D1 D2) Q^T, so FD has a closed form.
  q = scipy.stats.ortho_group.rvs(6, random_state=0)
  d1, d2 = np.array([1.0, 2, 3, 4, 5, 6]), np.array([0.5, 1, 4, 4, 1, 9])
  mu1, mu2 = np.arange(6.0), np.arange(6.0)[::-1]
  closed = np.sum((mu1 - mu2) ** 2) + np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))
  got = frechet.frechet_distance(mu1, q @ np.diag(d1) @ q.T, mu2, q @ np.diag(d2) @ q.T)
  assert got == pytest.approx(closed, rel=1e-9)


def test_identical_sets_give_zero_and_a_noise_ladder_increases():
  x = np.random.default_rng(0).normal(size=(2000, 16)) @ np.random.default_rng(1).normal(size=(16, 16))
  assert abs(frechet.feature_frechet_distance(x, x)) < 1e-8
  noise = np.random.default_rng(2).normal(size=x.shape)
  ladder = [frechet.feature_frechet_distance(x, x + s * noise) for s in (0.1, 0.3, 1.0, 3.0)]
  assert all(a < b for a, b in zip(ladder, ladder[1:]))


def test_precision_recall_match_brute_force():
  rng = np.random.default_rng(3)
  real, fake = rng.normal(size=(60, 3)), rng.normal(0.7, 1.3, size=(50, 3))

  def brute(a, b, k=3):  # fraction of b inside the union of a's k-NN balls
    d_aa = np.linalg.norm(a[:, None] - a[None], axis=-1)
    radii = np.sort(d_aa, 1)[:, k]
    d_ba = np.linalg.norm(b[:, None] - a[None], axis=-1)
    return np.mean(np.any(d_ba <= radii[None], 1))

  p, r = frechet.precision_recall(real, fake)
  assert p == pytest.approx(brute(real, fake)) and r == pytest.approx(brute(fake, real))
  assert frechet.precision_recall(real, real) == (1.0, 1.0)
  assert frechet.precision_recall(real, real + 100.0) == (0.0, 0.0)


def test_few_points_take_the_exact_low_rank_route():
  """N - 1 < D: the (N - 1) x (N - 1) eigenproblem gives 0 for a set against its own statistics (the D x D route
  leaves up to ~1e-6 of tr S) and agrees with the D x D route and scipy's sqrtm where those are accurate."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(20, 64)) @ rng.normal(size=(64, 64))
  mu, sigma = frechet.gaussian_statistics(x)
  assert abs(frechet.frechet_distance_to_statistics(x, mu, sigma)) < 1e-9 * np.trace(sigma)
  z = rng.normal(size=(300, 64)) @ rng.normal(size=(64, 64))
  mu2, sigma2 = frechet.gaussian_statistics(z)
  sqrtm = np.trace(scipy.linalg.sqrtm(sigma @ sigma2)).real
  brute = np.sum((mu - mu2) ** 2) + np.trace(sigma) + np.trace(sigma2) - 2 * sqrtm
  got = frechet.frechet_distance_to_statistics(x, mu2, sigma2)
  assert got == pytest.approx(brute, rel=1e-7)
  assert got == pytest.approx(frechet.frechet_distance(mu, sigma, mu2, sigma2), rel=1e-7)
  assert frechet.frechet_distance_to_statistics(z, mu2, sigma2) == frechet.frechet_distance(mu2, sigma2, mu2, sigma2)


def test_accumulated_statistics_equal_those_of_the_whole_set():
  """Chunks of rows far from the origin (mean 1e4, unit spread) give gaussian_statistics of all of them."""
  x = 1e4 + np.random.default_rng(5).normal(size=(500, 8)) @ np.random.default_rng(6).normal(size=(8, 8))
  acc = frechet.GaussianAccumulator()
  for chunk in np.split(x, [7, 200, 499]):
    acc.add(chunk)
  mu, sigma = acc.statistics()
  want_mu, want_sigma = frechet.gaussian_statistics(x)
  np.testing.assert_allclose(mu, want_mu, rtol=1e-14)
  np.testing.assert_allclose(sigma, want_sigma, rtol=1e-9, atol=1e-12 * np.abs(want_sigma).max())
