"""ViT-VQGAN on Fashion-MNIST: 4x4 patches (a 7x7 grid, as the demo's conv tokenizer), a 4-block transformer in
the encoder and in the decoder, and ViT-VQGAN's factorised codes (1024 codes looked up in an 8-dim l2-normalised
space), trained with the objective of configs/tokenizer/vqgan_fashion_mnist.py (pixel + perceptual + PatchGAN).

  python -m vqgen.main --config=configs/tokenizer/vit_vqgan_fashion_mnist.py --workdir=runs/vit_vqgan
Variants: steps, perceptual, adversarial (0 also drops the discriminator), start, pixel (l1 | l2), width, depth, and
quantizer=fsq (the demo's FSQ (8, 5, 5, 5): compares the backbones with the same codes).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.model.name = "vit"
  c.model.patch_size = 4
  c.model.vit_width = 128
  c.model.vit_depth = 4
  c.model.vit_heads = 4
  c.model.vit_positions = "learned"
  c.quantizer = config_lib.quantizer_config("vq", dim=32, codebook_size=1024, codebook_dim=8, cosine=True,
                                            kmeans_init=True)
  config_lib.use_vqgan_objective(c, steps=1500)
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.optimizer.learning_rate = 1e-3
  items = [item for item in (arg or "").split(",") if item]
  quantizer = [item.partition("=")[2] for item in items if item.startswith("quantizer=")]
  if quantizer and quantizer[-1] not in ("vq", "fsq"):
    raise config_lib.ConfigError(f"quantizer={quantizer[-1]!r}: choose vq (factorised, l2-normalised) or fsq.")
  config_lib.parse_variant(",".join(i for i in items if not i.startswith("quantizer=")), c, {
      "steps": ("train.steps", int), "perceptual": ("loss.perceptual_weight", float),
      "adversarial": ("loss.adversarial_weight", float), "start": ("loss.discriminator_start", int),
      "pixel": ("loss.reconstruction", str),
      "width": ("model.vit_width", int), "depth": ("model.vit_depth", int)})
  if quantizer and quantizer[-1] == "fsq":
    c.quantizer = config_lib.quantizer_config("fsq", levels=(8, 5, 5, 5))
  if c.loss.adversarial_weight == 0:
    c.discriminator.name = "none"
  c.lock()
  return c
