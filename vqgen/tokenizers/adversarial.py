"""The adversarial terms of VQGAN-class tokenizer training, as pure functions of discriminator logits.

Discriminator and generator losses (`kind`):
  hinge           L_D = 1/2 (E relu(1 - D(x)) + E relu(1 + D(x_hat)))      L_G = -E D(x_hat)       (VQGAN)
  non_saturating  L_D = 1/2 (E softplus(-D(x)) + E softplus(D(x_hat)))     L_G = E softplus(-D(x_hat))
                  (Goodfellow et al. 2014; MaskGIT / MaskBit; the 1/2 is VQGAN's convention for both kinds)
LeCam regularisation (Tseng et al. 2021, eq. 3 as in their released code), with a_R / a_F exponential moving
averages of the mean real / fake logits:
  R_LC = E relu(D(x) - a_F)^2 + E relu(a_R - D(x_hat))^2
R1 penalty (Mescheder et al. 2018): E ||grad_x D(x)||^2 on real images (the caller multiplies by gamma / 2).
VQGAN's adaptive weight (Esser et al. 2021, eq. 7), GL the decoder's last layer:
  lambda = ||grad_GL L_rec|| / (||grad_GL L_GAN|| + 1e-4), clipped to [0, 1e4] and not differentiated.
"""

import jax
import jax.numpy as jnp
import optax

GAN_LOSSES = ("hinge", "non_saturating")


def _check(kind: str) -> None:
  if kind not in GAN_LOSSES:
    raise ValueError(f"GAN loss must be one of {GAN_LOSSES}, got {kind!r}.")


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array, kind: str = "hinge") -> jax.Array:
  """L_D of the module docstring (fake logits of stop-gradient reconstructions)."""
  _check(kind)
  if kind == "hinge":
    return 0.5 * (jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits)))
  return 0.5 * (jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits)))


def generator_loss(fake_logits: jax.Array, kind: str = "hinge") -> jax.Array:
  """L_G of the module docstring."""
  _check(kind)
  if kind == "hinge":
    return -jnp.mean(fake_logits)
  return jnp.mean(jax.nn.softplus(-fake_logits))


def lecam_regularizer(real_logits: jax.Array, fake_logits: jax.Array, ema_real, ema_fake) -> jax.Array:
  """R_LC: real logits pulled below the fake anchor, fake logits above the real anchor (anchors not trained)."""
  ema_real, ema_fake = jax.lax.stop_gradient(ema_real), jax.lax.stop_gradient(ema_fake)
  return (jnp.mean(jnp.square(jax.nn.relu(real_logits - ema_fake)))
          + jnp.mean(jnp.square(jax.nn.relu(ema_real - fake_logits))))


def update_lecam_anchors(ema_real, ema_fake, real_logits, fake_logits, decay: float = 0.999):
  """The anchors after one step: a <- decay a + (1 - decay) mean(logits)."""
  mean = lambda x: jnp.mean(jax.lax.stop_gradient(x))
  return (decay * ema_real + (1.0 - decay) * mean(real_logits),
          decay * ema_fake + (1.0 - decay) * mean(fake_logits))


def r1_penalty(discriminator, real_images: jax.Array) -> jax.Array:
  """E_x ||grad_x D(x)||^2 over the batch (D(x) may be a logit map: its sum is differentiated per image)."""
  grads = jax.grad(lambda x: jnp.sum(discriminator(x)))(real_images)
  return jnp.mean(jnp.sum(jnp.square(grads).reshape(len(real_images), -1), -1))


def adaptive_weight(reconstruction_grads, gan_grads, eps: float = 1e-4, max_weight: float = 1e4) -> jax.Array:
  """lambda of eq. 7 from the two losses' gradients with respect to the decoder's last layer (any pytrees)."""
  weight = optax.tree.norm(reconstruction_grads) / (optax.tree.norm(gan_grads) + eps)
  return jax.lax.stop_gradient(jnp.clip(weight, 0.0, max_weight))


def start_factor(step, start: int) -> jax.Array:
  """1 from training step `start` on, else 0 (the adversarial terms are off before the discriminator starts)."""
  return (jnp.asarray(step) >= start).astype(jnp.float32)
