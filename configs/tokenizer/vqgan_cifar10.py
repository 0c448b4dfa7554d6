"""VQGAN-class tokenizer on CIFAR-10: 32x32x3 images -> 8x8 codes (f4) of FSQ (7, 5, 5, 5, 5) = 4375 codes.

A full-resolution conv encoder and decoder (VQGAN's: 128 channels, multipliers (1, 2, 2), 2 res blocks per level,
GroupNorm(32), swish, stride-2 conv downsampling, self-attention in the middle block), FSQ with the FSQ paper's
levels for a 2^12 codebook (no codebook losses). Objective (config.use_cifar10_vqgan_objective): L1 + 1.0
LPIPS-VGG16 + 0.1 hinge PatchGAN with VQGAN's adaptive weight and LeCam, the discriminator from a third of the run;
Adam (0.5, 0.9) at 2e-4, EMA 0.999; batch 128 with random horizontal flips, 100k steps (256 epochs). Compute
assumed: one accelerator of the A100 / H100 class for a few hours (18M parameters; about 25 GFLOP per image forward
and backward with the discriminator and VGG16, 3e17 FLOP in all; an estimate, not a measurement). On a CPU, use the
variants below for a smoke run only.

  python -m vqgen.main --config=configs/tokenizer/vqgan_cifar10.py --workdir=runs/cifar10/tokenizer \
      --config.loss.perceptual_weights=/path/to/lpips_vgg16.npz --config.data.data_dir=/path/to/tensorflow_datasets

Needs CIFAR-10 prepared for TFDS (`tfds build cifar10 --file_format=array_record`) and VGG16 + LPIPS v0.1 weights as
local files (docs/perceptual.md); vqgen downloads neither (docs/cifar10.md). The 8x8 codes carry at most 64
log2(4375) = 774 bits per image, 0.25 bits per pixel dimension.
Variants: data (cifar10 | synthetic: random 32x32x3 images of the right shape, a smoke test without CIFAR-10),
perceptual (loss.perceptual_weight; 0 needs no weights file), adversarial (0 also drops the discriminator), start
(loss.discriminator_start), levels (e.g. 8-5-5-5), steps, batch_size, flip (data.random_flip).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  config_lib.use_cifar10(c)
  c.model.name = "conv"
  c.model.patch_size = 1
  c.model.channels = 128
  c.model.channel_multipliers = (1, 2, 2)
  c.model.num_res_blocks = 2
  c.model.norm_groups = 32
  c.model.mid_attention = True
  c.model.activation = "swish"
  c.model.downsample = "conv"
  c.quantizer = config_lib.quantizer_config("fsq", levels=(7, 5, 5, 5, 5))
  config_lib.use_cifar10_vqgan_objective(c, steps=100_000)
  config_lib.parse_variant(arg, c, {
      "data": ("data.name", str), "perceptual": ("loss.perceptual_weight", float),
      "adversarial": ("loss.adversarial_weight", float), "start": ("loss.discriminator_start", int),
      "levels": ("quantizer.levels", config_lib.levels_from_string), "steps": ("train.steps", int),
      "batch_size": ("data.batch_size", int), "flip": ("data.random_flip", config_lib.boolean)})
  config_lib.check_cifar10_source(c)
  if c.loss.adversarial_weight == 0:
    c.discriminator.name = "none"
  c.lock()
  return c
