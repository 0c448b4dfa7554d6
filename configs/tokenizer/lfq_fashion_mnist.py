"""LFQ tokenizer (MAGVIT-v2) on Fashion-MNIST: one latent channel per bit, entropy 0.1, commitment 0.25.

  python -m vqgen.main --config=configs/tokenizer/lfq_fashion_mnist.py --workdir=runs/lfq
  ...lfq_fashion_mnist.py:codebook_size=65536,entropy_mode=grouped,group_size=4
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.quantizer = config_lib.quantizer_config("lfq", codebook_size=1024)
  config_lib.parse_variant(arg, c, {
      "codebook_size": ("quantizer.codebook_size", int),
      "entropy_mode": ("quantizer.entropy_mode", str),
      "group_size": ("quantizer.group_size", int),
      "entropy_weight": ("quantizer.entropy_weight", float),
      "steps": ("train.steps", int),
  })
  c.lock()
  return c
