"""Class-conditional mask-and-replace discrete diffusion (VQ-Diffusion) over Fashion-MNIST codes: a corrupted token is
[MASK] or a random code, so the sampler fills masks and may still revise codes.

  python -m vqgen.main --config=configs/prior/mask_replace_fashion_mnist.py:tokenizer=runs/fsq --workdir=runs/vqd
  ...mask_replace_fashion_mnist.py:tokenizer=runs/fsq,strategy=purity
T = 100 with VQ-Diffusion's linear schedules to gbar_T = 0.9 ([MASK]) and K bbar_T = 0.1 (random code), the paper's
values (the released code's are `mask_end=0.99999,replace_end=0.000001`: masking only, in effect); auxiliary x_0
cross-entropy 1e-3 with the adaptive weight (microsoft/VQ-Diffusion configs/imagenet.yaml), time-conditioned network,
50 ancestral steps. The source samples class-conditional ImageNet with guidance 1.5 and truncation 0.94
(`guidance=1.5,top_p=0.94`); this config keeps the project's guidance 2 and no truncation, as the other families.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_prior_family(c, "mask_replace")
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
