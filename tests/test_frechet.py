"""Frechet distance and k-NN precision/recall against closed forms and brute force."""

import numpy as np
import pytest
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
