"""VQGAN-LC on Fashion-MNIST (Zhu et al. 2024, arXiv 2406.11837): a large frozen codebook of feature centres and a
trained linear projector (quantizers/vq.py, feature_dim; stages/feature_codebook.py).

  python -m vqgen.cli.feature_codebook --out=runs/vqgan_lc/feature_codebook.npy --codebook_size=16384
  python -m vqgen.main --config=configs/tokenizer/vqgan_lc_fashion_mnist.py --workdir=runs/vqgan_lc/tokenizer
  ...vqgan_lc_fashion_mnist.py:codebook_size=4096,feature_codebook=runs/vqgan_lc/features_4096.npy

The centres are the 64-d patch features of vqgen's perceptual network (its 7x7 last tap, the tokenizer's grid),
projected to the 8-d lookup space (the paper's embed_dim 8) in which 32-channel latents are quantized (Euclidean,
as the paper's 'org' quantizer). The file is read once at a fresh start; the trained run keeps the codebook in its
checkpoint.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.quantizer = config_lib.quantizer_config("vq", dim=32, codebook_size=16384, codebook_dim=8,
                                            feature_dim=64)  # FashionPerceptual's last tap
  c.model.feature_codebook = "runs/vqgan_lc/feature_codebook.npy"
  config_lib.parse_variant(arg, c, {
      "codebook_size": ("quantizer.codebook_size", int),
      "feature_codebook": ("model.feature_codebook", str),
      "steps": ("train.steps", int),
  })
  c.lock()
  return c
