"""Factorized VQ tokenizer on Fashion-MNIST (FQGAN's factorized quantization, Bai et al. 2024, arXiv 2411.16681):
the latent's channels split between sub-codebooks, each a VQ of its own (here 2 x 512 codes looked up in an 8-dim
l2-normalised space, as LlamaGen's and FQGAN's codebooks), with the disentanglement regulariser at the paper's 0.1
(quantizers/grouped.py). Multi-head VQ with a codebook per head is the same with disentanglement_weight=0.

  python -m vqgen.main --config=configs/tokenizer/fqgan_fashion_mnist.py --workdir=runs/fqgan
  ...fqgan_fashion_mnist.py:groups=4,disentanglement_weight=0     multi-head VQ, 4 heads
Variant keys: groups, codebook_size (per sub-codebook), disentanglement_weight, steps. FQGAN's semantic
supervision of a sub-codebook by a pretrained vision model is not part of this recipe.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.quantizer = config_lib.quantizer_config("grouped", quantizer="vq", groups=2, disentanglement_weight=0.1,
                                            dim=16, codebook_size=512, codebook_dim=8, cosine=True,
                                            kmeans_init=True)
  config_lib.parse_variant(arg, c, {
      "groups": ("quantizer.groups", int),
      "codebook_size": ("quantizer.codebook_size", int),
      "disentanglement_weight": ("quantizer.disentanglement_weight", float),
      "steps": ("train.steps", int),
  })
  c.lock()
  return c
