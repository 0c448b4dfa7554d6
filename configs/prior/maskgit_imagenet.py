"""MaskGIT on ImageNet-256 (Chang et al. 2022; google-research/maskgit configs/maskgit_class_cond_config.py): a
bidirectional transformer of 24 layers, width 768, 16 heads, MLP 3072 (172M parameters with this vocabulary),
dropout 0.1, learned positions, over the 16x16 codes of configs/tokenizer/maskgit_vqgan_imagenet.py.

  python -m vqgen.main --config=configs/prior/maskgit_imagenet.py:tokenizer=runs/maskgit_vqgan \
      --workdir=runs/maskgit_imagenet
Training: ceil(gamma(r) N) codes masked (cosine gamma), at least half of them (min_masking_rate 0.5), label
smoothing 0.1; AdamW (0.9, 0.96), weight decay 0.045, 1e-4 after 5000 warmup steps, then constant; batch 256,
300 epochs (1.5M steps; the released config says 2M), EMA (Polyak) 0.999. Decoding: 8 steps, choice temperature
4.5, no classifier-free guidance (the paper's FID 6.18), so no class dropout either: `class_dropout=0.1,guidance=2`
trains and samples with guidance instead (MUSE / MaskBit practice). Shared ImageNet settings
(config.use_imagenet_prior): 1000 classes, batch 256, 50k samples; FID through vqgen.evaluate. Cost:
benchmarks/results/cost_imagenet.md.
Variants: config.PRIOR_VARIANTS, mask_schedule, class_dropout.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_imagenet_prior(c, "maskgit")
  c.network.width, c.network.depth, c.network.heads, c.network.mlp_ratio = 768, 24, 16, 4
  c.network.dropout = 0.1
  c.network.positions = "learned"
  c.prior.min_mask_ratio = 0.5
  c.prior.class_dropout = 0.0
  c.sampling.guidance_scale, c.sampling.guidance_schedule = 1.0, "constant"
  c.sampling.steps, c.sampling.choice_temperature = 8, 4.5
  c.optimizer.learning_rate, c.optimizer.b1, c.optimizer.b2, c.optimizer.weight_decay = 1e-4, 0.9, 0.96, 0.045
  c.optimizer.warmup_steps, c.optimizer.end_learning_rate_factor = 5000, 1.0
  c.optimizer.ema_decay = 0.999
  config_lib.parse_variant(arg, c, {**variants, "class_dropout": ("prior.class_dropout", float)})
  c.lock()
  return c
