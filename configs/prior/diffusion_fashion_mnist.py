"""Class-conditional masked (absorbing) discrete diffusion, MD4, over Fashion-MNIST codes.

  python -m vqgen.main --config=configs/prior/diffusion_fashion_mnist.py:tokenizer=runs/fsq --workdir=runs/md4
  ...diffusion_fashion_mnist.py:tokenizer=runs/fsq,schedule=cosine,sampling_steps=128
Linear alpha schedule (best likelihood in MD4), 32 ancestral steps on a cosine time grid; the loss is the
continuous-time ELBO, reported in bits per token.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_prior_family(c, "diffusion")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
