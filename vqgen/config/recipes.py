"""Recipes: groups of settings that config files share (the VQGAN objective on Fashion-MNIST, ImageNet-256's data
and GAN set-up, CIFAR-10's data, objective and priors). Each writes keys of an existing config; none adds keys."""

import ml_collections

from vqgen.config.schema import ConfigError
from vqgen.config.variants import PRIOR_VARIANTS, boolean

DATA_SOURCES_256 = ("imagenet2012", "synthetic")  # the data= variant of the ImageNet recipes
DATA_SOURCES_CIFAR10 = ("cifar10", "synthetic")   # the data= variant of configs/tokenizer/vqgan_cifar10.py


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
  centre crops with random horizontal flips (the papers' random-resized crops are not implemented), or
  `synthetic` images of the same shape (data/synthetic.py) to smoke-test or benchmark without the data."""
  c.data.name = source
  c.data.random_flip = True
  c.data.train_split, c.data.eval_split = "train", "validation"
  c.data.image_size, c.data.channels = 256, 3
  c.data.batch_size, c.data.eval_batch_size = 256, 128
  c.train.log_every, c.train.checkpoint_every, c.train.num_grid_images = 1000, 10_000, 8


def check_imagenet_source(c: ml_collections.ConfigDict) -> None:
  """Refuses a data= variant of the ImageNet recipes that is neither ImageNet nor synthetic images."""
  _check_source(c, DATA_SOURCES_256)


def _check_source(c: ml_collections.ConfigDict, choices: tuple) -> None:
  if c.data.name not in choices:
    raise ConfigError(f"data={c.data.name!r}: choose one of {choices}.")


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


def use_cifar10(c: ml_collections.ConfigDict, source: str = "cifar10") -> None:
  """CIFAR-10 at 32x32x3 (TFDS `cifar10`, prepared locally: 50k train / 10k test images, 10 classes; docs/cifar10.md)
  with random horizontal flips of the training images, batch 128; or `synthetic` images of the same shape
  (data/synthetic.py) to smoke-test or benchmark without the data."""
  c.data.name = source
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.image_size, c.data.channels = 32, 3
  c.data.batch_size, c.data.eval_batch_size = 128, 500
  c.data.random_flip = True
  c.train.log_every, c.train.checkpoint_every, c.train.num_grid_images = 500, 5000, 16


def check_cifar10_source(c: ml_collections.ConfigDict) -> None:
  """Refuses a data= variant of the CIFAR-10 tokenizer that is neither CIFAR-10 nor synthetic images."""
  _check_source(c, DATA_SOURCES_CIFAR10)


def use_cifar10_vqgan_objective(c: ml_collections.ConfigDict, steps: int) -> None:
  """The VQGAN objective of use_vqgan_objective (L1 pixel loss, hinge PatchGAN at 0.1 with VQGAN's adaptive weight
  and LeCam 0.001, the discriminator from a third of `steps`) on RGB: the perceptual term is standard LPIPS (VGG16,
  weights from local files in loss.perceptual_weights; refused by validation until given) at VQGAN's weight 1.0,
  and the PatchGAN is 64 channels wide with 2 stride-2 layers (8x8 patches of a 32 px image). Adam (0.5, 0.9),
  as VQGAN, for both networks at 2e-4 on a cosine to a tenth (the tokenizer after 1000 warmup steps); EMA 0.999
  of the tokenizer."""
  use_vqgan_objective(c, steps=steps)
  c.loss.perceptual_network = "lpips_vgg16"
  c.loss.perceptual_weight = 1.0
  c.discriminator.channels = 64
  c.discriminator.num_layers = 2
  for o in (c.optimizer, c.discriminator.optimizer):
    o.learning_rate, o.b1, o.b2, o.end_learning_rate_factor = 2e-4, 0.5, 0.9, 0.1
  c.optimizer.warmup_steps = 1000
  c.optimizer.ema_decay = 0.999


def use_prior_family(c: ml_collections.ConfigDict, name: str) -> dict:
  """The settings of a prior family that are the same on every dataset (configs/prior/<family>_<dataset>.py) and
  its variant table (PRIOR_VARIANTS and the family's own keys):
    maskgit            fixed 2-D positions, guidance ramped linearly to 3 (docs/results.md, "Guidance annealing")
    autoregressive     no label smoothing; variants top_k, top_p
    rq_transformer     the same, for stacked codes; variant depth_layers (its depth transformer)
    diffusion          MD4: no label smoothing, 32 steps; variants schedule, grid, time_conditioning,
                       sampler, remask (none, cap, rescale, loop), remask_eta
    uniform_diffusion  D3PM-uniform: the same with the cosine schedule and time conditioning; variant corrector_steps
    mask_replace       VQ-Diffusion: T = 100, the paper's gbar_T = 0.9 and K bbar_T = 0.1, auxiliary weight 1e-3
                       (the source's class-conditional configs/imagenet.yaml), time conditioning, 50 ancestral steps
                       (the source's 2x fast inference); variants mask_end, replace_end, strategy, top_p."""
  c.prior.name = name
  if name == "maskgit":
    c.network.positions = "2d"
    c.sampling.guidance_scale = 3.0
    c.sampling.guidance_schedule = "linear"
    return {**PRIOR_VARIANTS, "mask_schedule": ("prior.mask_schedule", str)}
  c.prior.label_smoothing = 0.0
  if name in ("autoregressive", "rq_transformer"):
    variants = {**PRIOR_VARIANTS, "top_k": ("sampling.top_k", int), "top_p": ("sampling.top_p", float)}
    return variants if name == "autoregressive" else {**variants, "depth_layers": ("network.depth_layers", int)}
  if name == "mask_replace":
    c.prior.uniform_steps, c.prior.mask_end, c.prior.replace_end, c.prior.aux_weight = 100, 0.9, 0.1, 1e-3
    c.prior.time_conditioning = True
    c.sampling.steps = 50
    return {**PRIOR_VARIANTS, "mask_end": ("prior.mask_end", float), "replace_end": ("prior.replace_end", float),
            "strategy": ("sampling.strategy", str), "top_p": ("sampling.top_p", float)}
  if name not in ("diffusion", "uniform_diffusion"):
    raise ConfigError(f"Unknown prior family {name!r}: choose maskgit, autoregressive, diffusion, "
                      "uniform_diffusion, mask_replace or rq_transformer.")
  c.sampling.steps = 32
  variants = {**PRIOR_VARIANTS, "schedule": ("prior.diffusion_schedule", str), "grid": ("sampling.grid", str)}
  if name == "uniform_diffusion":
    c.prior.diffusion_schedule = "cosine"
    c.prior.time_conditioning = True
    return {**variants, "corrector_steps": ("sampling.corrector_steps", int)}
  return {**variants, "time_conditioning": ("prior.time_conditioning", boolean), "sampler": ("sampling.sampler", str),
          "remask": ("sampling.remask", str), "remask_eta": ("sampling.remask_eta", float)}


def use_cifar10_prior(c: ml_collections.ConfigDict) -> None:
  """The settings configs/prior/*_cifar10.py share: class-conditional (10 classes, 10% class dropout) over the 8x8
  codes of configs/tokenizer/vqgan_cifar10.py, a transformer of width 512, depth 8, 8 heads (30M parameters with a
  4375-code vocabulary; 11 GFLOP per sequence forward and backward) with dropout 0.1 (50k training images: the
  network would overfit without), batch 256 for 100k steps (512 epochs), AdamW 4e-4 (beta2 0.98, weight decay 0.05)
  after 5000 warmup steps, cosine to 2%, EMA 0.9999 of the parameters for evaluation. Evaluation: the validation
  likelihood over the whole test split, 10k class-balanced samples (samples.npz); the in-domain sample metrics are
  Fashion-MNIST's, so they are off: FID is `python -m vqgen.evaluate --features=inception --reference=cifar10:train`
  (docs/cifar10.md)."""
  c.prior.num_classes = 10
  c.prior.class_dropout = 0.1
  c.network.width, c.network.depth, c.network.heads, c.network.mlp_ratio = 512, 8, 8, 4
  c.network.dropout = 0.1
  c.data.batch_size, c.data.eval_batch_size, c.data.eval_limit = 256, 500, 0
  c.train.steps, c.train.log_every, c.train.checkpoint_every = 100_000, 500, 5000
  c.optimizer.learning_rate, c.optimizer.b2, c.optimizer.weight_decay = 4e-4, 0.98, 0.05
  c.optimizer.warmup_steps, c.optimizer.end_learning_rate_factor = 5000, 0.02
  c.optimizer.ema_decay = 0.9999
  c.sampling.num_samples, c.sampling.batch_size = 10_000, 500
  c.evaluation.metrics = False


def use_imagenet_prior(c: ml_collections.ConfigDict, family: str) -> dict:
  """The settings configs/prior/*_imagenet.py share, then `family`'s (use_prior_family), and the variant table.

  Shared: class-conditional (1000 classes) over the 16x16 codes of configs/tokenizer/maskgit_vqgan_imagenet.py
  (1024 codes; validation split for the validation loss), batch 256, 300 epochs of the 1,281,167 training images
  (1.5M steps), 50k class-balanced samples (50 per class, the papers' FID convention), no in-domain sample metrics:
  FID / IS are `python -m vqgen.evaluate --features=inception --reference=imagenet2012:train` (docs/inception.md).
  Codes are extracted once from centre crops (data/pipeline.py) and from their mirror images (data.flip_codes:
  LlamaGen's flips; its ten crops are not implemented)."""
  c.data.flip_codes = True
  c.prior.num_classes = 1000
  c.data.batch_size, c.data.eval_batch_size, c.data.eval_limit = 256, 500, 0
  c.train.steps, c.train.log_every, c.train.checkpoint_every = 1_500_000, 1000, 10_000
  c.sampling.num_samples, c.sampling.batch_size = 50_000, 500
  c.evaluation.metrics = False
  return use_prior_family(c, family)
