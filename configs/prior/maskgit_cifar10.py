"""Class-conditional MaskGIT over the 8x8 codes of the CIFAR-10 tokenizer (configs/tokenizer/vqgan_cifar10.py).

  python -m vqgen.main --config=configs/prior/maskgit_cifar10.py:tokenizer=runs/cifar10/tokenizer \
      --workdir=runs/cifar10/maskgit
The CIFAR-10 settings every prior shares (config.use_cifar10_prior): width 512, depth 8, dropout 0.1, batch 256,
100k steps, EMA 0.9999. Compute assumed: one A100 / H100-class accelerator for one to three hours (11 GFLOP per
sequence forward and backward, 2.8e17 FLOP in all; an estimate, not a measurement). MaskGIT's objective as on
Fashion-MNIST: ceil(gamma(r) N) codes masked (cosine gamma), label smoothing 0.1, fixed 2-D positions; 8 decoding
steps at choice temperature 4.5, guidance ramping linearly from 1 to 3. The validation loss (val_masked_nll, nats
per masked code) is not a likelihood of the codes, and no bits/dim is reported for it (docs/cifar10.md).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  config_lib.use_cifar10_prior(c)
  variants = config_lib.use_prior_family(c, "maskgit")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
