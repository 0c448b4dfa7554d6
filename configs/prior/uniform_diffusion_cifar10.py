"""Class-conditional uniform-noise discrete diffusion (D3PM-uniform) over the 8x8 codes of the CIFAR-10 tokenizer
(configs/tokenizer/vqgan_cifar10.py).

  python -m vqgen.main --config=configs/prior/uniform_diffusion_cifar10.py:tokenizer=runs/cifar10/tokenizer \
      --workdir=runs/cifar10/d3pm
The CIFAR-10 settings every prior shares (config.use_cifar10_prior): width 512, depth 8, dropout 0.1, batch 256,
100k steps, EMA 0.9999. Compute assumed: one A100 / H100-class accelerator for one to three hours (11 GFLOP per
sequence forward and backward, 2.8e17 FLOP in all; an estimate, not a measurement). Cosine alpha schedule, T = 100
for the discrete-time ELBO, auxiliary x_0 cross-entropy 0.01, time-conditioned network, 32 ancestral steps on a
cosine grid. The ELBO (without the auxiliary term) bounds the codes' negative log-likelihood: val_bits_per_token and
val_bits_per_dim (docs/cifar10.md).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  config_lib.use_cifar10_prior(c)
  variants = config_lib.use_prior_family(c, "uniform_diffusion")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
