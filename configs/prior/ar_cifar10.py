"""Class-conditional autoregressive prior (raster order, class token first) over the 8x8 codes of the CIFAR-10
tokenizer (configs/tokenizer/vqgan_cifar10.py).

  python -m vqgen.main --config=configs/prior/ar_cifar10.py:tokenizer=runs/cifar10/tokenizer \
      --workdir=runs/cifar10/ar
The CIFAR-10 settings every prior shares (config.use_cifar10_prior): width 512, depth 8, dropout 0.1, batch 256,
100k steps, EMA 0.9999. Compute assumed: one A100 / H100-class accelerator for one to three hours (11 GFLOP per
sequence forward and backward, 2.8e17 FLOP in all; an estimate, not a measurement). No label smoothing: the loss is
the exact negative log-likelihood of the codes, reported as val_bits_per_token and, per pixel dimension,
val_bits_per_dim (docs/cifar10.md). Sampling: 64 cached steps, guidance 2.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  config_lib.use_cifar10_prior(c)
  variants = config_lib.use_prior_family(c, "autoregressive")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
