"""MaskGIT's VQGAN tokenizer on ImageNet-256 (Chang et al. 2022; google-research/maskgit configs/vqgan_config.py).

f16: 256 px images -> 16x16 codes of VQ with 1024 codes of dimension 256 (commitment 0.25, entropy loss 0.1 at
temperature 0.01). Conv encoder and decoder: 128 channels, multipliers (1, 1, 2, 2, 4), 2 res blocks per level,
GroupNorm(32), swish, average-pool downsampling, no attention. Objective: L2 + 0.1 perceptual + 0.1
non-saturating adversarial loss of a StyleGAN discriminator with blur resampling and an R1 penalty of cost 10,
no adaptive weight. Adam (beta1 0, beta2 0.99) at a constant 1e-4 for both networks, no weight decay, batch 256,
1M steps, EMA (Polyak) 0.999 of the generator.

  python -m vqgen.main --config=configs/tokenizer/maskgit_vqgan_imagenet.py --workdir=runs/maskgit_vqgan \
      --config.loss.perceptual_weights=/path/to/lpips_vgg16.npz --config.data.data_dir=/path/to/tensorflow_datasets

Needs ImageNet prepared for TFDS (`tfds build imagenet2012 --file_format=array_record`, with the archives
downloaded by hand) and VGG16 + LPIPS v0.1 weights as a local .npz (docs/perceptual.md); vqgen downloads neither.
MaskGIT's own perceptual network was not released: this recipe uses LPIPS-VGG16 at MaskGIT's weight.
Variants: data=synthetic (random 256x256x3 images of the right shape: a smoke test or a throughput benchmark
without ImageNet), steps, batch_size.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  config_lib.use_imagenet256(c)
  c.model.name = "conv"
  c.model.patch_size = 1
  c.model.channels = 128
  c.model.channel_multipliers = (1, 1, 2, 2, 4)
  c.model.num_res_blocks = 2
  c.model.norm_groups = 32
  c.model.activation = "swish"
  c.model.downsample = "avgpool"
  c.quantizer = config_lib.quantizer_config("vq", dim=256, codebook_size=1024, commitment_weight=0.25,
                                            entropy_weight=0.1, entropy_temperature=0.01)
  config_lib.use_imagenet_gan(c)
  c.loss.r1_gamma = 20.0  # R1 as gamma / 2 * E||grad D||^2: MaskGIT's grad_penalty_cost 10
  c.train.steps = 1_000_000
  for o in (c.optimizer, c.discriminator.optimizer):
    o.learning_rate, o.b1, o.b2, o.weight_decay = 1e-4, 0.0, 0.99, 0.0
    o.warmup_steps, o.end_learning_rate_factor, o.grad_clip_norm = 0, 1.0, 0.0  # constant
  c.optimizer.ema_decay = 0.999
  config_lib.parse_variant(arg, c, {
      "data": ("data.name", str), "steps": ("train.steps", int), "batch_size": ("data.batch_size", int)})
  config_lib.check_imagenet_source(c)
  c.lock()
  return c
