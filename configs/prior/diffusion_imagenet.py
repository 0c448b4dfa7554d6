"""MD4 over codes on ImageNet-256 (Shi et al. 2024; google-deepmind/md4 md4/configs/md4/imagenet64.py and its
class-conditional sweep): masked diffusion with MD4's transformer size for ImageNet (20 layers, width 768, 12
heads, dropout 0.1) conditioned on t by adaLN-Zero, over the 16x16 codes of
configs/tokenizer/maskgit_vqgan_imagenet.py instead of 64x64x3 pixels.

  python -m vqgen.main --config=configs/prior/diffusion_imagenet.py:tokenizer=runs/maskgit_vqgan \
      --workdir=runs/diffusion_imagenet
Training: the continuous-time ELBO with the cosine schedule (MD4's choice for class-conditional samples), a
bound on the code likelihood (val_bits_per_token, val_bits_per_dim); AdamW (0.9, 0.99), weight decay 0.01, 2e-4
after 100 warmup steps on a cosine, batch 512 (MD4's), 2M steps (MD4's; 800 epochs at this batch), EMA 0.9999;
class dropout 0.1 so guidance can be tried (MD4 reports none). Sampling: 256 ancestral steps on the uniform time
grid (MD4's timesteps and class-conditional grid), guidance 1. The code vocabulary (1024) replaces MD4's 256 pixel
values; MD4's U-Net / DiT hybrid for pixels is replaced by the plain transformer every vqgen prior uses.
Shared ImageNet settings: config.use_imagenet_prior. Cost: benchmarks/results/cost_imagenet.md.
Variants: config.PRIOR_VARIANTS, schedule, grid, time_conditioning.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_imagenet_prior(c, "diffusion")
  c.network.width, c.network.depth, c.network.heads, c.network.mlp_ratio = 768, 20, 12, 4
  c.network.dropout = 0.1
  c.prior.diffusion_schedule, c.prior.time_conditioning = "cosine", True
  c.prior.class_dropout = 0.1
  c.data.batch_size, c.train.steps = 512, 2_000_000
  c.sampling.steps, c.sampling.grid = 256, "uniform"
  c.sampling.guidance_scale, c.sampling.guidance_schedule = 1.0, "constant"
  c.optimizer.learning_rate, c.optimizer.b1, c.optimizer.b2, c.optimizer.weight_decay = 2e-4, 0.9, 0.99, 0.01
  c.optimizer.warmup_steps, c.optimizer.end_learning_rate_factor = 100, 0.0
  c.optimizer.ema_decay = 0.9999
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
