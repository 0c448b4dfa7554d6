"""Class-conditional autoregressive prior (raster order, class token first) over Fashion-MNIST codes.

  python -m vqgen.main --config=configs/prior/ar_fashion_mnist.py:tokenizer=runs/fsq --workdir=runs/ar
  ...ar_fashion_mnist.py:tokenizer=runs/fsq,guidance=2,guidance_schedule=constant,top_k=100   constant guidance, top-k
Sampling decodes with a static key/value cache inside jit, one forward of one token per code. Guidance ramps from 1
at the first code to 4 at the last (cosine): over 3 sampling seeds FD 9.57 +- 0.10 against 11.29 +- 0.78 for a
constant 2, class accuracy 89.8% vs 93.0% (docs/results.md, "Classifier-free guidance: scale and schedule").
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_prior_family(c, "autoregressive")
  c.sampling.guidance_scale, c.sampling.guidance_schedule = 4.0, "cosine"
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
