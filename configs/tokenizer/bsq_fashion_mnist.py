"""BSQ tokenizer on Fashion-MNIST: 16-channel latents projected to 10 bits on the unit sphere (1024 codes).

  python -m vqgen.main --config=configs/tokenizer/bsq_fashion_mnist.py --workdir=runs/bsq
  ...bsq_fashion_mnist.py:num_bits=14,group_size=7
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.tokenizer_config()
  c.quantizer = config_lib.quantizer_config("bsq", dim=16, num_bits=10, group_size=5)
  config_lib.parse_variant(arg, c, {
      "num_bits": ("quantizer.num_bits", int),
      "group_size": ("quantizer.group_size", int),
      "steps": ("train.steps", int),
  })
  c.lock()
  return c
