"""ViT-VQGAN on ImageNet-256 (Yu et al. 2022, "Vector-quantized Image Modeling with Improved VQGAN").

8x8 patches (a 32x32 grid of codes), ViT-VQGAN-Small encoder and decoder (8 blocks, width 512, 8 heads, MLP 2048;
`size=base`: 12 blocks, 768, 12 heads, MLP 3072), 8192 factorised codes looked up in a 32-dimensional
l2-normalised space. Objective: L2 + 0.1 perceptual + 0.1 adversarial loss of a StyleGAN discriminator (the
paper's logit-Laplace term, weight 0.1, is not implemented in vqgen and is left out). Adam (0.9, 0.99) with
decoupled weight decay 1e-4; the learning rate warms up linearly to 1e-4 over 50k steps, then follows a cosine
down to 5e-5 at 500k steps; batch 256.

  python -m vqgen.main --config=configs/tokenizer/vit_vqgan_imagenet.py --workdir=runs/vit_vqgan_imagenet \
      --config.loss.perceptual_weights=/path/to/lpips_vgg16.npz --config.data.data_dir=/path/to/tensorflow_datasets

Data and weights as configs/tokenizer/maskgit_vqgan_imagenet.py. Variants: data=synthetic, size (small | base),
steps, batch_size.
"""

from vqgen import config as config_lib

SIZES = {"small": (512, 8, 8), "base": (768, 12, 12)}  # width, depth, heads (MLP ratio 4)


def get_config(arg: str | None = None):
  items = [item for item in (arg or "").split(",") if item]
  size = ([item.partition("=")[2] for item in items if item.startswith("size=")] or ["small"])[-1]
  if size not in SIZES:
    raise config_lib.ConfigError(f"size={size!r}: choose one of {sorted(SIZES)}.")
  c = config_lib.tokenizer_config()
  config_lib.use_imagenet256(c)
  c.model.name = "vit"
  c.model.patch_size = 8
  c.model.vit_width, c.model.vit_depth, c.model.vit_heads = SIZES[size]
  c.model.vit_mlp_ratio = 4
  c.model.vit_positions = "learned"
  c.quantizer = config_lib.quantizer_config("vq", dim=32, codebook_size=8192, cosine=True)
  config_lib.use_imagenet_gan(c)
  c.train.steps = 500_000
  for o in (c.optimizer, c.discriminator.optimizer):
    o.learning_rate, o.b1, o.b2, o.weight_decay, o.grad_clip_norm = 1e-4, 0.9, 0.99, 1e-4, 0.0
  c.optimizer.warmup_steps, c.optimizer.end_learning_rate_factor = 50_000, 0.5
  c.discriminator.optimizer.warmup_steps, c.discriminator.optimizer.end_learning_rate_factor = 0, 1.0
  config_lib.parse_variant(",".join(i for i in items if not i.startswith("size=")), c, {
      "data": ("data.name", str), "steps": ("train.steps", int), "batch_size": ("data.batch_size", int)})
  config_lib.check_imagenet_source(c)
  c.lock()
  return c
