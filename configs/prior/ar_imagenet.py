"""LlamaGen-B on ImageNet-256 (Sun et al. 2024; FoundationVision/LlamaGen autoregressive/models/gpt.py GPT-B and
autoregressive/train/train_c2i.py): a causal transformer of 12 layers, width 768, 12 heads with RMSNorm, SwiGLU
(hidden 2048) and 2-D rotary positions, dropout 0.1 on the residual branches, over the 16x16 codes of
configs/tokenizer/maskgit_vqgan_imagenet.py in raster order, the class token first.

  python -m vqgen.main --config=configs/prior/ar_imagenet.py:tokenizer=runs/maskgit_vqgan \
      --workdir=runs/ar_imagenet
Training: class dropout 0.1 (for guidance), no label smoothing (the loss is the exact code likelihood: bits per
token and per dimension are reported); AdamW (0.9, 0.95), weight decay 0.05, a constant 1e-4 without warmup, grad
clip 1.0, batch 256, 300 epochs (1.5M steps), no EMA. Sampling: 256 cached steps, guidance 2.0 as u + s (c - u)
(LlamaGen's convention too), temperature 1, no top-k / top-p. Differences from LlamaGen: its tokenizer has 16384
codes (here MaskGIT's 1024: 87M parameters instead of 111M), its linear layers have no biases, it drops whole
input tokens too (token dropout 0.1), zeroes the class slot's rotary q and k (here it is not turned), and
trains on codes of ten crops and their flips per image (here of the centre crop and its flip). Shared ImageNet settings: config.use_imagenet_prior.
Cost: benchmarks/results/cost_imagenet.md.
Variants: config.PRIOR_VARIANTS, top_k, top_p.
"""

from vqgen import config as config_lib


def get_config(arg: str | None = None):
  c = config_lib.prior_config()
  variants = config_lib.use_imagenet_prior(c, "autoregressive")
  c.network.width, c.network.depth, c.network.heads, c.network.mlp_ratio = 768, 12, 12, 4
  c.network.norm, c.network.mlp, c.network.positions = "rmsnorm", "swiglu", "rope2d"
  c.network.dropout = 0.1
  c.prior.class_dropout = 0.1
  c.sampling.guidance_scale, c.sampling.guidance_schedule = 2.0, "constant"
  c.optimizer.learning_rate, c.optimizer.b1, c.optimizer.b2, c.optimizer.weight_decay = 1e-4, 0.9, 0.95, 0.05
  c.optimizer.warmup_steps, c.optimizer.end_learning_rate_factor, c.optimizer.grad_clip_norm = 0, 1.0, 1.0
  config_lib.parse_variant(arg, c, variants)
  c.lock()
  return c
