"""VQGAN's objective (Esser et al. 2021, eq. 5-7, with MaskGIT / MaskBit's options): a tokenizer trained with a
pixel loss, a perceptual loss and an adversarial loss against a discriminator trained in the same step.

  L_rec = w_pix * pixel(x_hat, x) + w_perc * LPIPS(x_hat, x)                          (+ the quantizer's losses)
  L_G   = L_rec + f(step) * w_adv * lambda * gan_G(D(x_hat))     D's parameters under stop_gradient
  L_D   = f(step) * [gan_D(D(x), D(sg(x_hat))) + w_lecam * R_LC + gamma / 2 * R1]
with f(step) = 1 from `discriminator_start` on (0 before: neither the generator term nor the discriminator
trains), and lambda VQGAN's adaptive weight (eq. 7) on the decoder's last layer, or 1. The sum L_G + L_D is one
objective: each parameter group only receives the gradient of its own terms (train/step.py). The losses and the
regularisers are in adversarial.py; the perceptual distance in perceptual.py.

`discriminator_input='clipped'` (ours) shows D the reconstructions clipped to [0, 1], as every image is shown and
scored: half of Fashion-MNIST's pixels are exactly 0, so on raw decoder outputs D can separate real from fake by
background deviations that clipping erases (the references feed raw outputs). Logged balance: D's accuracy on the
batch and the adversarial gradient's share at the decoder's last layer, ||grad w_adv lambda L_G|| / ||grad L_rec||.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from vqgen.tokenizers import adversarial
from vqgen.tokenizers.losses import tokenizer_losses
from vqgen.tokenizers.tokenizer import Tokenizer


DISCRIMINATOR_INPUTS = ("raw", "clipped")


class LeCamAnchor(nnx.Variable):
  """An EMA of mean discriminator logits (not a parameter: updated in the forward pass, checkpointed)."""


class TokenizerGAN(nnx.Module):
  """A Tokenizer and its discriminator, trained together. Top-level parameter keys: `tokenizer`, `discriminator`."""

  def __init__(self, tokenizer: Tokenizer, discriminator: nnx.Module):
    self.tokenizer, self.discriminator = tokenizer, discriminator
    self.lecam_real, self.lecam_fake = LeCamAnchor(jnp.zeros(())), LeCamAnchor(jnp.zeros(()))


def frozen(module: nnx.Module) -> nnx.Module:
  """The same module with every array under stop_gradient (the generator's view of the discriminator)."""
  graphdef, state = nnx.split(module)
  return nnx.merge(graphdef, jax.lax.stop_gradient(state))


def vqgan_losses(model: TokenizerGAN | Tokenizer, images: jax.Array, step, *, perceptual=None,
                 reconstruction: str = "l2", reconstruction_weight: float = 1.0, perceptual_weight: float = 0.0,
                 adversarial_weight: float = 0.0, adaptive_weight: bool = True, gan_loss: str = "hinge",
                 discriminator_start: int = 0, lecam_weight: float = 0.0, lecam_decay: float = 0.999,
                 r1_gamma: float = 0.0, discriminator_input: str = "raw") -> tuple[dict, dict]:
  """(named loss terms whose sum is the objective, metrics) for a batch of images in [0, 1].

  `model`: a TokenizerGAN, or a bare Tokenizer (no adversarial terms). `perceptual`: (x_hat, x) -> distance per
  image, required when perceptual_weight > 0. `step`: the optimizer steps taken so far (a traced scalar).
  """
  gan = isinstance(model, TokenizerGAN)
  tokenizer = model.tokenizer if gan else model
  if adversarial_weight > 0 and not gan:
    raise ValueError("adversarial_weight > 0 needs a discriminator (a TokenizerGAN).")
  if perceptual_weight > 0 and perceptual is None:
    raise ValueError("perceptual_weight > 0 needs a perceptual distance.")
  if discriminator_input not in DISCRIMINATOR_INPUTS:
    raise ValueError(f"discriminator_input must be one of {DISCRIMINATOR_INPUTS}, got {discriminator_input!r}.")
  q = tokenizer.quantizer(tokenizer.latents(images), train=True)
  features = tokenizer.decoder.features(q.quantized)
  last_def, last_state = nnx.split(tokenizer.decoder.last_layer)
  recon_of = lambda state: tokenizer.images_from(features, nnx.merge(last_def, state))

  def reconstruction_terms(recon):
    terms = tokenizer_losses(recon, images, {}, reconstruction=reconstruction,
                             reconstruction_weight=reconstruction_weight)
    if perceptual_weight > 0:
      terms["perceptual"] = perceptual_weight * jnp.mean(perceptual(recon, images))
    return terms

  recon = recon_of(last_state)
  losses = {**reconstruction_terms(recon), **q.losses}
  metrics = {f"quantizer/{k}": v for k, v in q.metrics.items()}
  metrics["mse"] = jnp.mean(jnp.square(jnp.clip(recon, 0, 1) - images))
  if not gan or adversarial_weight == 0:
    return losses, metrics

  factor = adversarial.start_factor(step, discriminator_start)
  d_view = frozen(model.discriminator)
  shown = (lambda r: jnp.clip(r, 0.0, 1.0)) if discriminator_input == "clipped" else (lambda r: r)
  generator_term = lambda recon: adversarial.generator_loss(d_view(2.0 * shown(recon) - 1.0), gan_loss)
  grad_rec = jax.grad(lambda s: sum(reconstruction_terms(recon_of(s)).values()))(last_state)
  grad_gan = jax.grad(lambda s: generator_term(recon_of(s)))(last_state)
  lam = adversarial.adaptive_weight(grad_rec, grad_gan) if adaptive_weight else jnp.ones(())
  losses["generator"] = factor * adversarial_weight * lam * generator_term(recon)
  norm = lambda tree: jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))
  metrics["gan/grad_share"] = adversarial_weight * lam * norm(grad_gan) / jnp.maximum(norm(grad_rec), 1e-12)

  real_in = 2.0 * images - 1.0
  real = model.discriminator(real_in)
  fake = model.discriminator(jax.lax.stop_gradient(2.0 * shown(recon) - 1.0))
  losses["discriminator"] = factor * adversarial.discriminator_loss(real, fake, gan_loss)
  if lecam_weight > 0:
    losses["lecam"] = factor * lecam_weight * adversarial.lecam_regularizer(
        real, fake, model.lecam_real[...], model.lecam_fake[...])
    new_real, new_fake = adversarial.update_lecam_anchors(model.lecam_real[...], model.lecam_fake[...], real, fake,
                                                          lecam_decay)
    started = factor > 0
    model.lecam_real[...] = jnp.where(started, new_real, model.lecam_real[...])
    model.lecam_fake[...] = jnp.where(started, new_fake, model.lecam_fake[...])
  if r1_gamma > 0:
    losses["r1"] = factor * 0.5 * r1_gamma * adversarial.r1_penalty(model.discriminator, real_in)
  metrics.update({"gan/adaptive_weight": lam, "gan/factor": factor, "gan/real_logits": jnp.mean(real),
                  "gan/fake_logits": jnp.mean(fake),
                  "gan/d_accuracy": 0.5 * (jnp.mean(real > 0) + jnp.mean(fake < 0))})
  return losses, metrics
