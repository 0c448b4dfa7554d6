"""The adversarial and perceptual terms of VQGAN-class training against their formulas, computed in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vqgen.tokenizers import adversarial, perceptual

RNG = np.random.default_rng(0)
REAL, FAKE = RNG.normal(0.3, 1.5, (8, 4, 4, 1)), RNG.normal(-0.2, 1.5, (8, 4, 4, 1))
softplus = lambda x: np.log1p(np.exp(x))
relu = lambda x: np.maximum(x, 0.0)


@pytest.mark.parametrize("kind, d_loss, g_loss", [
    ("hinge", 0.5 * (relu(1 - REAL).mean() + relu(1 + FAKE).mean()), -FAKE.mean()),
    ("non_saturating", 0.5 * (softplus(-REAL).mean() + softplus(FAKE).mean()), softplus(-FAKE).mean()),
])
def test_gan_losses_equal_their_formulas(kind, d_loss, g_loss):
  np.testing.assert_allclose(float(adversarial.discriminator_loss(REAL, FAKE, kind)), d_loss, rtol=1e-5)
  np.testing.assert_allclose(float(adversarial.generator_loss(FAKE, kind)), g_loss, rtol=1e-5)


def test_unknown_gan_loss_names_the_choices():
  with pytest.raises(ValueError, match="hinge.*non_saturating"):
    adversarial.generator_loss(FAKE, "wgan")


def test_lecam_regularizer_and_anchors():
  ema_real, ema_fake = 0.4, -0.1
  expected = np.mean(relu(REAL - ema_fake) ** 2) + np.mean(relu(ema_real - FAKE) ** 2)
  np.testing.assert_allclose(float(adversarial.lecam_regularizer(REAL, FAKE, ema_real, ema_fake)), expected,
                             rtol=1e-5)
  new_real, new_fake = adversarial.update_lecam_anchors(ema_real, ema_fake, REAL, FAKE, decay=0.9)
  np.testing.assert_allclose([float(new_real), float(new_fake)],
                             [0.9 * ema_real + 0.1 * REAL.mean(), 0.9 * ema_fake + 0.1 * FAKE.mean()], rtol=1e-5)
  # The anchors are constants: the gradient flows to the logits only.
  g = jax.grad(lambda a: adversarial.lecam_regularizer(jnp.asarray(REAL), jnp.asarray(FAKE), a, a))(0.2)
  assert float(g) == 0.0


def test_r1_penalty_of_a_linear_discriminator():
  """D(x) = <a, x>: grad_x D = a for every image, so the penalty is ||a||^2."""
  a = jnp.asarray(RNG.normal(size=(4, 4, 1)), jnp.float32)
  images = jnp.asarray(RNG.normal(size=(5, 4, 4, 1)), jnp.float32)
  penalty = adversarial.r1_penalty(lambda x: jnp.sum(x * a, axis=(1, 2, 3)), images)
  np.testing.assert_allclose(float(penalty), float(jnp.sum(a * a)), rtol=1e-5)


def test_adaptive_weight_is_the_gradient_norm_ratio_on_a_toy_decoder():
  """Last layer W of a decoder, hidden h, target y: L_rec = ||W h - y||^2 has grad 2 (W h - y) h^T and
  L_GAN = -sum(W h) has grad -1 h^T; lambda = ||.||_F ratio (+1e-4), clipped to [0, 1e4]."""
  w, h, y = RNG.normal(size=(3, 5)), RNG.normal(size=(5,)), RNG.normal(size=(3,))
  rec = jax.grad(lambda w: jnp.sum(jnp.square(w @ h - y)))(jnp.asarray(w))
  gan = jax.grad(lambda w: -jnp.sum(w @ h))(jnp.asarray(w))
  expected = np.linalg.norm(2 * np.outer(w @ h - y, h)) / (np.linalg.norm(np.outer(np.ones(3), h)) + 1e-4)
  np.testing.assert_allclose(float(adversarial.adaptive_weight({"w": rec}, {"w": gan})), expected, rtol=1e-5)
  assert float(adversarial.adaptive_weight(rec, jnp.zeros_like(gan))) == 1e4  # clipped
  # Not differentiated: no gradient reaches the reconstruction loss through lambda.
  assert float(jax.grad(lambda s: adversarial.adaptive_weight(s * rec, gan))(1.0)) == 0.0


def test_start_factor():
  assert [float(adversarial.start_factor(s, 3)) for s in (0, 2, 3, 10)] == [0.0, 0.0, 1.0, 1.0]


def _lpips_numpy(fx, fy, weights):
  total = np.zeros(len(fx[0]))
  for layer, (a, b) in enumerate(zip(fx, fy)):
    na = a / (np.sqrt((a ** 2).sum(-1, keepdims=True)) + 1e-10)
    nb = b / (np.sqrt((b ** 2).sum(-1, keepdims=True)) + 1e-10)
    w = np.ones(a.shape[-1]) if weights is None else weights[layer]
    total += (((na - nb) ** 2) * w).sum(-1).mean((1, 2))
  return total


@pytest.mark.parametrize("weighted", [False, True])
def test_lpips_distance_equals_a_direct_computation(weighted):
  shapes = [(3, 8, 8, 4), (3, 4, 4, 6)]
  fx = [RNG.normal(size=s) for s in shapes]
  fy = [RNG.normal(size=s) for s in shapes]
  weights = [RNG.uniform(size=s[-1]) for s in shapes] if weighted else None
  d = perceptual.lpips_distance([jnp.asarray(f) for f in fx], [jnp.asarray(f) for f in fy], weights)
  np.testing.assert_allclose(np.asarray(d), _lpips_numpy(fx, fy, weights), rtol=1e-5)
  assert np.all(np.asarray(perceptual.lpips_distance(fx, fx, weights)) == 0.0)  # identical images
  # Unit normalisation: scaling a feature map changes nothing.
  np.testing.assert_allclose(np.asarray(perceptual.lpips_distance([3.0 * f for f in fx], fy, weights)),
                             np.asarray(d), rtol=1e-5)
