"""vqgen's own perceptual network for Fashion-MNIST (the perceptual loss of configs/tokenizer/vqgan_fashion_mnist.py).

  python -m vqgen.main --config=configs/classifier/perceptual_fashion_mnist.py --workdir=runs/perceptual
A tokenizer with loss.perceptual_network='fashion_mnist' trains it on first use into
~/.cache/vqgen/perceptual/fashion_mnist with these settings. It is not the sample metrics' network
(configs/classifier/fashion_mnist.py): another architecture and another seed (docs/design.md).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.perceptual_network_config()
  config_lib.parse_variant(arg, c, {"steps": ("train.steps", int)})
  c.lock()
  return c
