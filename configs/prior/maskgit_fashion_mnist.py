"""Class-conditional MaskGIT over the codes of a Fashion-MNIST tokenizer.

  python -m vqgen.main --config=configs/prior/maskgit_fashion_mnist.py:tokenizer=runs/fsq --workdir=runs/maskgit
  ...maskgit_fashion_mnist.py:tokenizer=runs/fsq,guidance=2,sampling_steps=12     guided, 12 decoding steps
Training masks ceil(gamma(r) N) codes (cosine gamma), label smoothing 0.1, class dropout 0.1; decoding 8 steps
with choice temperature 4.5 (MaskGIT's ImageNet settings). The demo's budget is spent as 4800 steps at batch 32
with fixed 2-D positions: at the compute of 2400 steps at batch 64 it samples closer to the data (FD 23.2 vs
31.4 on the demo tokenizer, docs/results.md "MaskGIT at the demo's compute"). Guidance ramps linearly from 1 to 3
over the decoding steps: FD 20.0 vs 22.4 for a constant 2 (mean of 3 sampling seeds, same section).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_prior_family(c, "maskgit")
  c.data.batch_size = 32
  c.train.steps = 4800
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
