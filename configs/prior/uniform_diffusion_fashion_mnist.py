"""Class-conditional uniform-noise discrete diffusion (D3PM-uniform) over Fashion-MNIST codes: corrupted tokens
are random codes, so sampling can revise any token at any step.

  python -m vqgen.main --config=configs/prior/uniform_diffusion_fashion_mnist.py:tokenizer=runs/fsq --workdir=runs/d3pm
Cosine alpha schedule, T = 100 for the ELBO, auxiliary x_0 cross-entropy 0.01, time-conditioned network (the
noise level is not visible in the tokens), 32 ancestral steps on a cosine grid.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_prior_family(c, "uniform_diffusion")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
