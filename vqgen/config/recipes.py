"""Recipes: groups of settings that config files share (the VQGAN objective on Fashion-MNIST, ImageNet-256's data
and GAN set-up). Each writes keys of an existing tokenizer config; none adds keys."""

import ml_collections

from vqgen.config.schema import ConfigError

DATA_SOURCES_256 = ("imagenet2012", "synthetic")  # the data= variant of the ImageNet recipes


def use_vqgan_objective(c: ml_collections.ConfigDict, steps: int = 1500) -> None:
  """The Fashion-MNIST VQGAN objective of configs/tokenizer/{vqgan,vit_vqgan}_fashion_mnist.py on a tokenizer
  config: L1 pixel loss + 3.0 perceptual (vqgen's own network) + 0.1 hinge PatchGAN (2 layers, 32 channels, lr
  2e-4) with the adaptive weight and LeCam 0.001, the discriminator starting at a third of `steps`.

  Chosen by 600-step runs (docs/results.md, "Tuning the VQGAN objective"): against MSE only (reconstruction FD
  13.7), L1 + 1.0 perceptual gave 8.8, 3.0 perceptual 8.3, + 0.1 adversarial 8.5 (from 8.8), while 0.8
  adversarial gave 16.7 (speckle); the earlier L2 + 0.1 perceptual + 0.1 adversarial gave 10.0; this objective
  8.15 at the same PSNR (20.7 dB)."""
  c.train.steps = steps
  c.loss.reconstruction = "l1"
  c.loss.perceptual_weight = 3.0
  c.loss.perceptual_network = "fashion_mnist"
  c.loss.adversarial_weight = 0.1
  c.loss.gan_loss = "hinge"
  c.loss.discriminator_start = steps // 3
  c.loss.lecam_weight = 0.001
  c.discriminator.name = "patchgan"
  c.discriminator.channels = 32
  c.discriminator.num_layers = 2
  c.discriminator.optimizer.learning_rate = 2e-4


def use_imagenet256(c: ml_collections.ConfigDict, source: str = "imagenet2012") -> None:
  """ImageNet at 256x256x3 (TFDS `imagenet2012`, prepared locally; validation split for evaluation), batch 256,
  or `synthetic` images of the same shape (data/synthetic.py) to smoke-test or benchmark without the data."""
  c.data.name = source
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.data.image_size, c.data.channels = 256, 3
  c.data.batch_size, c.data.eval_batch_size = 256, 128
  c.train.log_every, c.train.checkpoint_every, c.train.num_grid_images = 1000, 10_000, 8


def check_imagenet_source(c: ml_collections.ConfigDict) -> None:
  """Refuses a data= variant of the ImageNet recipes that is neither ImageNet nor synthetic images."""
  if c.data.name not in DATA_SOURCES_256:
    raise ConfigError(f"data={c.data.name!r}: choose one of {DATA_SOURCES_256}.")


def use_imagenet_gan(c: ml_collections.ConfigDict) -> None:
  """The GAN side shared by MaskGIT's VQGAN and ViT-VQGAN on ImageNet-256: L2 + 0.1 LPIPS (VGG16, weights from
  the local .npz in loss.perceptual_weights) + 0.1 non-saturating loss of the StyleGAN discriminator with blur
  down-sampling (MaskGIT's widths for 256 px: 64, then 128, 256 and four blocks of 512, down to 4x4), no
  adaptive weight, the discriminator trained from step 0."""
  c.loss.reconstruction = "l2"
  c.loss.perceptual_weight = 0.1
  c.loss.perceptual_network = "lpips_vgg16"
  c.loss.adversarial_weight = 0.1
  c.loss.adaptive_weight = False
  c.loss.gan_loss = "non_saturating"
  c.loss.discriminator_start = 0
  c.discriminator.name = "stylegan"
  c.discriminator.stylegan_channels = (64, 128, 256, 512, 512, 512, 512)
