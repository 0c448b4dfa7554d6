"""Class-conditional MaskGIT over the codes of a Fashion-MNIST tokenizer.

  python -m vqgen.main --config=configs/prior/maskgit_fashion_mnist.py:tokenizer=runs/fsq --workdir=runs/maskgit
  ...maskgit_fashion_mnist.py:tokenizer=runs/fsq,guidance=2,sampling_steps=12     guided, 12 decoding steps
Training masks ceil(gamma(r) N) codes (cosine gamma), label smoothing 0.1, class dropout 0.1; decoding 8 steps
with choice temperature 4.5 (MaskGIT's ImageNet settings).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  c.prior.name = "maskgit"
  config_lib.parse_variant(arg, c, {**config_lib.PRIOR_VARIANTS,
                                    "mask_schedule": ("prior.mask_schedule", str)})
  c.lock()
  return c
