"""Class-conditional mask-and-replace discrete diffusion (VQ-Diffusion) over the 8x8 codes of the CIFAR-10 tokenizer
(configs/tokenizer/vqgan_cifar10.py).

  python -m vqgen.main --config=configs/prior/mask_replace_cifar10.py:tokenizer=runs/cifar10/tokenizer \
      --workdir=runs/cifar10/vqd
The CIFAR-10 settings every prior shares (config.use_cifar10_prior): width 512, depth 8, dropout 0.1, batch 256,
100k steps, EMA 0.9999. Compute assumed: one A100 / H100-class accelerator for one to three hours (as the other
CIFAR-10 priors; an estimate, not a measurement). T = 100, gbar_T = 0.9, K bbar_T = 0.1, auxiliary weight 1e-3 with
the adaptive weight, time-conditioned network, 50 ancestral steps (`strategy=purity` for Improved VQ-Diffusion's
purity sampler). The ELBO (without the auxiliary term) bounds the codes' negative log-likelihood: val_bits_per_token
and val_bits_per_dim (docs/cifar10.md).
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  config_lib.use_cifar10_prior(c)
  variants = config_lib.use_prior_family(c, "mask_replace")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
