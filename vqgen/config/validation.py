"""Validation: `validate(config)` checks every value before any work and names the first bad key and what it
may be. Names (quantizers, priors, schedules) come from the model packages' own registries."""

import os

import ml_collections
from flax import nnx

from vqgen.config.schema import (CLASSIFIER_ARCHITECTURES, COMPUTE_DTYPES, DISCRIMINATORS, PERCEPTUAL_NETWORKS,
                                 PRE_QUANT_NORMS, RECONSTRUCTION, STAGES, TOKENIZER_NETWORKS, ConfigError)
from vqgen.nn import transformer
from vqgen.priors import PRIORS, heads, sampling, schedules
from vqgen.priors.diffusion import GRIDS, REMASKS, SAMPLERS
from vqgen.priors.mask_replace_diffusion import MASK_START, STRATEGIES
from vqgen.quantizers import QUANTIZERS, build_quantizer
from vqgen.tokenizers.adversarial import GAN_LOSSES
from vqgen.tokenizers.conv import ACTIVATIONS, DOWNSAMPLES
from vqgen.tokenizers.vqgan import DISCRIMINATOR_INPUTS
from vqgen.tokenizers.discriminators import NORMS
from vqgen.tokenizers.perceptual_networks import MIN_VGG16_SIZE


def _check(ok: bool, key: str, value, allowed: str):
  if not ok:
    raise ConfigError(f"Invalid config value {key}={value!r}: {allowed}.")


def _one_of(c, key: str, choices):
  value = c
  for p in key.split("."):
    value = value[p]
  _check(value in choices, key, value, f"must be one of {list(choices)}")


def _positive_ints(c, keys) -> None:
  for key in keys:
    section, name = key.split(".")
    value = c[section][name]
    _check(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid key and its allowed values."""
  _one_of(c, "stage", STAGES)
  _check(isinstance(c.seed, int) and 0 <= c.seed < 2**63, "seed", c.seed, "must be an integer in [0, 2**63)")
  _positive_ints(c, ("data.batch_size", "data.eval_batch_size", "train.steps", "train.log_every",
                     "train.checkpoint_every", "train.keep_checkpoints"))
  _check(c.data.eval_limit >= 0, "data.eval_limit", c.data.eval_limit, "must be >= 0 (0 = whole split)")
  _validate_optimizer(c, "optimizer")
  for axis in ("data", "fsdp", "model"):
    v = c.mesh[axis]
    _check(isinstance(v, int) and (v >= 1 or v == -1), f"mesh.{axis}", v, "must be a positive integer or -1")
  for rule in c.mesh.rules:
    _check(len(rule) == 2 and rule[1] in ("data", "fsdp", "model", None), "mesh.rules", rule,
           "each rule must be (logical_axis, one of 'data' | 'fsdp' | 'model' | None)")
  {"tokenizer": _validate_tokenizer, "prior": _validate_prior, "classifier": _validate_classifier}[c.stage](c)


def _validate_optimizer(c, name: str) -> None:
  o = c
  for part in name.split("."):
    o = o[part]
  _check(o.learning_rate > 0, f"{name}.learning_rate", o.learning_rate, "must be > 0")
  _check(0 <= o.warmup_steps < c.train.steps, f"{name}.warmup_steps", o.warmup_steps,
         f"must be in [0, train.steps={c.train.steps})")
  _check(0 <= o.end_learning_rate_factor <= 1, f"{name}.end_learning_rate_factor",
         o.end_learning_rate_factor, "must be in [0, 1]")
  _check(0 <= o.b1 < 1 and 0 <= o.b2 < 1, f"{name}.b1/b2", (o.b1, o.b2), "must be in [0, 1)")
  _check(o.weight_decay >= 0, f"{name}.weight_decay", o.weight_decay, "must be >= 0")
  _check(o.grad_clip_norm >= 0, f"{name}.grad_clip_norm", o.grad_clip_norm, "must be >= 0 (0 = off)")
  _check(0 <= o.ema_decay < 1, f"{name}.ema_decay", o.ema_decay, "must be in [0, 1) (0 = off)")


def _validate_tokenizer(c) -> None:
  _one_of(c, "quantizer.name", sorted(QUANTIZERS))
  _one_of(c, "loss.reconstruction", RECONSTRUCTION)
  _one_of(c, "model.pre_quant_norm", PRE_QUANT_NORMS)
  _one_of(c, "model.compute_dtype", COMPUTE_DTYPES)
  _one_of(c, "model.name", TOKENIZER_NETWORKS)
  _positive_ints(c, ("data.image_size", "data.channels", "model.patch_size"))
  (_validate_vit if c.model.name == "vit" else _validate_conv)(c)
  _validate_gan(c)
  lc = c.quantizer.get("feature_dim", 0) > 0
  _check(bool(c.model.feature_codebook) == lc and (c.quantizer.name == "vq" or not lc), "model.feature_codebook",
         c.model.feature_codebook, "must name the .npy of the frozen VQGAN-LC codebook exactly when a 'vq' quantizer "
         "has feature_dim > 0 (python -m vqgen.cli.feature_codebook writes one)")
  try:  # the quantizer checks its own arguments: build it abstractly (no arrays)
    nnx.eval_shape(lambda: build_quantizer(**c.quantizer.to_dict(), rngs=nnx.Rngs(0)))
  except (ValueError, TypeError) as e:
    raise ConfigError(f"Invalid config value quantizer={c.quantizer.to_dict()}: {e}") from e


def _validate_conv(c) -> None:
  m = c.model
  _positive_ints(c, ("model.channels", "model.num_res_blocks", "model.norm_groups"))
  _one_of(c, "model.activation", ACTIVATIONS)
  _one_of(c, "model.downsample", DOWNSAMPLES)
  mults = tuple(m.channel_multipliers)
  _check(len(mults) >= 1 and all(isinstance(x, int) and x >= 1 for x in mults), "model.channel_multipliers",
         mults, "must be a non-empty tuple of positive integers")
  _check(all(isinstance(a, int) and 0 <= a < len(mults) for a in m.attention_levels), "model.attention_levels",
         tuple(m.attention_levels), f"must index the {len(mults)} levels of model.channel_multipliers (0 = first)")
  factor = m.patch_size * 2 ** (len(mults) - 1)
  _check(c.data.image_size % factor == 0, "data.image_size", c.data.image_size,
         f"must be divisible by model.patch_size * 2^(len(model.channel_multipliers) - 1) = {factor}")
  for x in mults:
    width = m.channels * x
    _check(width % min(m.norm_groups, width) == 0, "model.norm_groups", m.norm_groups,
           f"must divide every level's width (channels * multiplier = {width})")


def _validate_vit(c) -> None:
  m = c.model
  _positive_ints(c, ("model.vit_width", "model.vit_depth", "model.vit_heads", "model.vit_mlp_ratio"))
  _one_of(c, "model.vit_positions", transformer.POSITIONS)
  _check(c.data.image_size % m.patch_size == 0, "data.image_size", c.data.image_size,
         f"must be divisible by model.patch_size={m.patch_size} (the ViT patch)")
  _check(m.vit_width % m.vit_heads == 0, "model.vit_heads", m.vit_heads, f"must divide model.vit_width={m.vit_width}")
  _check(m.vit_positions != "2d" or m.vit_width % 4 == 0, "model.vit_width", m.vit_width,
         "must be divisible by 4 for 2-D sine-cosine positions")
  _check(m.vit_positions != "rope2d" or (m.vit_width // m.vit_heads) % 4 == 0, "model.vit_heads", m.vit_heads,
         f"must leave a head dimension (model.vit_width / heads) divisible by 4 for 2-D rotary positions")


def _validate_gan(c) -> None:
  """The perceptual and adversarial keys of a tokenizer run (tokenizers/vqgan.py)."""
  l, d = c.loss, c.discriminator
  for key in ("reconstruction_weight", "perceptual_weight", "adversarial_weight", "lecam_weight", "r1_gamma"):
    _check(l[key] >= 0, f"loss.{key}", l[key], "must be >= 0 (0 = off)")
  _one_of(c, "loss.perceptual_network", PERCEPTUAL_NETWORKS)
  _one_of(c, "loss.gan_loss", GAN_LOSSES)
  _one_of(c, "loss.discriminator_input", DISCRIMINATOR_INPUTS)
  _one_of(c, "discriminator.name", DISCRIMINATORS)
  _one_of(c, "discriminator.norm", NORMS)
  if l.perceptual_weight > 0 and l.perceptual_network == "lpips_vgg16":
    _check(bool(l.perceptual_weights), "loss.perceptual_weights", l.perceptual_weights,
           "must name the local VGG16 + LPIPS v0.1 weights for perceptual_network='lpips_vgg16': torchvision's "
           "VGG16 .pth and LPIPS's vgg.pth, comma-separated, or one .npz (vqgen never downloads weights; "
           "docs/perceptual.md)")
    missing = [p for p in l.perceptual_weights.split(",") if not os.path.isfile(p.strip())]
    _check(not missing, "loss.perceptual_weights", l.perceptual_weights,
           f"names no file at {missing}: give the local VGG16 + LPIPS v0.1 weight files (docs/perceptual.md)")
    _check(c.data.image_size >= MIN_VGG16_SIZE, "data.image_size", c.data.image_size,
           f"must be >= {MIN_VGG16_SIZE} for the VGG16 perceptual network (four 2x2 poolings)")
  if l.perceptual_weight > 0 and l.perceptual_network == "fashion_mnist":
    _check((c.data.image_size, c.data.channels) == (28, 1), "loss.perceptual_network", l.perceptual_network,
           "is built for 28x28 grayscale images; use 'lpips_vgg16' with its weights file for other data")
  _check(l.adversarial_weight == 0 or d.name != "none", "loss.adversarial_weight", l.adversarial_weight,
         "needs a discriminator: set discriminator.name to 'patchgan' or 'stylegan' (or adversarial_weight=0)")
  _check(d.name == "none" or l.adversarial_weight > 0, "discriminator.name", d.name,
         "trains nothing with loss.adversarial_weight=0: set the weight (e.g. 0.1) or discriminator.name='none'")
  _check(0 <= l.discriminator_start < c.train.steps or l.adversarial_weight == 0, "loss.discriminator_start",
         l.discriminator_start, f"must be in [0, train.steps={c.train.steps}) or the discriminator never starts")
  _check(0 <= l.lecam_decay < 1, "loss.lecam_decay", l.lecam_decay, "must be in [0, 1)")
  if d.name == "patchgan":
    _positive_ints(c, ("discriminator.channels", "discriminator.num_layers"))
    _check(c.data.image_size >= 2 ** (d.num_layers + 1), "discriminator.num_layers", d.num_layers,
           f"is too deep for {c.data.image_size}px images (needs image_size >= 2^(num_layers + 1))")
  if d.name == "stylegan":
    ch = tuple(d.stylegan_channels)
    _check(len(ch) >= 2 and all(isinstance(x, int) and x >= 1 for x in ch), "discriminator.stylegan_channels",
           ch, "must be the input width then one positive width per block (>= 2 entries)")
  if d.name != "none":
    _validate_optimizer(c, "discriminator.optimizer")


def _validate_prior(c) -> None:
  _one_of(c, "prior.name", PRIORS)
  _one_of(c, "prior.mask_schedule", schedules.MASK_SCHEDULES)
  _one_of(c, "sampling.mask_schedule", schedules.MASK_SCHEDULES)
  _one_of(c, "prior.diffusion_schedule", schedules.ALPHA_SCHEDULES)
  _one_of(c, "sampling.grid", GRIDS)
  _one_of(c, "sampling.guidance_schedule", sampling.GUIDANCE_SCHEDULES)
  _one_of(c, "sampling.strategy", STRATEGIES)
  _one_of(c, "network.positions", transformer.POSITIONS)
  _one_of(c, "network.norm", transformer.NORMS)
  _one_of(c, "network.mlp", transformer.MLPS)
  _one_of(c, "network.head", heads.HEADS)
  _one_of(c, "network.compute_dtype", COMPUTE_DTYPES)
  _positive_ints(c, ("network.width", "network.depth", "network.depth_layers", "network.heads", "network.mlp_ratio",
                     "network.head_groups", "sampling.num_samples", "sampling.batch_size", "sampling.steps"))
  _check(c.network.width % c.network.heads == 0, "network.heads", c.network.heads,
         f"must divide network.width={c.network.width}")
  _check(c.network.positions != "rope2d" or (c.network.width // c.network.heads) % 4 == 0, "network.heads",
         c.network.heads, "must leave a head dimension (network.width / heads) divisible by 4 for 2-D rotary "
         "positions")
  _check(c.network.positions != "2d" or c.network.width % 4 == 0, "network.width", c.network.width,
         "must be divisible by 4 for 2-D sine-cosine positions")
  _check(c.prior.num_classes >= 0, "prior.num_classes", c.prior.num_classes, "must be >= 0 (0 = unconditional)")
  _check(c.prior.num_classes > 0 or (c.prior.class_dropout == 0 and c.sampling.guidance_scale == 1),
         "prior.num_classes", c.prior.num_classes, "0 (unconditional) needs prior.class_dropout=0 and "
         "sampling.guidance_scale=1 (there is no class to drop or guide towards)")
  for key in ("prior.class_dropout", "prior.label_smoothing", "network.dropout"):
    section, name = key.split(".")
    _check(0 <= c[section][name] < 1, key, c[section][name], "must be in [0, 1)")
  _positive_ints(c, ("prior.uniform_steps",))
  _check(c.prior.aux_weight >= 0, "prior.aux_weight", c.prior.aux_weight, "must be >= 0")
  _check(c.prior.name not in ("uniform_diffusion", "mask_replace") or c.network.head == "full", "network.head",
         c.network.head, f"must be 'full' for {c.prior.name} (its posterior sums over every code)")
  if c.prior.name == "mask_replace":
    _validate_mask_replace(c)
  _check(0 <= c.prior.min_mask_ratio <= 1, "prior.min_mask_ratio", c.prior.min_mask_ratio, "must be in [0, 1]")
  _check(c.sampling.temperature > 0, "sampling.temperature", c.sampling.temperature, "must be > 0")
  _check(0 < c.sampling.top_p <= 1, "sampling.top_p", c.sampling.top_p, "must be in (0, 1]")
  _check(c.sampling.top_k >= 0, "sampling.top_k", c.sampling.top_k, "must be >= 0 (0 = off)")
  _check(c.sampling.guidance_scale >= 0, "sampling.guidance_scale", c.sampling.guidance_scale,
         "must be >= 0 (1 = conditional model, no guidance)")
  _check(c.sampling.guidance_scale == 1 or c.prior.class_dropout > 0, "sampling.guidance_scale",
         c.sampling.guidance_scale, "needs prior.class_dropout > 0 (an unconditional model to guide against)")
  _validate_diffusion_samplers(c)
  _check(bool(c.tokenizer_workdir), "tokenizer_workdir", c.tokenizer_workdir,
         "must name the workdir of a trained tokenizer (python -m vqgen.main --config=configs/demo.py ...)")
  e = c.evaluation
  if e.inception_weights:
    _check(os.path.isfile(os.path.expanduser(e.inception_weights)), "evaluation.inception_weights",
           e.inception_weights, "does not exist. vqgen never downloads weights: download pytorch-fid's "
           "pt_inception-2015-12-05-6726825d.pth yourself (docs/inception.md, 'The weights file') and give its path "
           "as --config.evaluation.inception_weights=PATH, or leave the key empty (no Inception metrics)")
  ref = e.inception_reference
  _check(not ref or (ref.endswith(".npz") and os.path.isfile(os.path.expanduser(ref))) or
         (not ref.endswith(".npz") and all(ref.partition(":")[::2])), "evaluation.inception_reference", ref,
         "must be DATASET:SPLIT (e.g. imagenet2012:train), an existing statistics .npz, or '' (the tokenizer's "
         "training split)")
  _check(e.num_reference >= 0, "evaluation.num_reference", e.num_reference, "must be >= 0 (0 = the whole split)")


def _validate_diffusion_samplers(c) -> None:
  """The samplers of the diffusion priors (priors/diffusion.py, priors/uniform_diffusion.py); a key set away from
  its neutral value is refused for a family that would ignore it."""
  s, name = c.sampling, c.prior.name
  _one_of(c, "sampling.sampler", SAMPLERS)
  _one_of(c, "sampling.remask", REMASKS)
  _check(0 <= s.remask_eta <= 1, "sampling.remask_eta", s.remask_eta, "must be in [0, 1] (ReMDM's eta)")
  loop = tuple(s.remask_loop)
  _check(len(loop) == 3 and 0 < loop[1] < loop[0] < 1 and 0 < loop[2] < 1, "sampling.remask_loop", loop,
         "must be (t_on, t_off, alpha_on) with 0 < t_off < t_on < 1 and 0 < alpha_on < 1 (ReMDM: (0.55, 0.05, 0.9))")
  _check(isinstance(s.corrector_steps, int) and s.corrector_steps >= 0, "sampling.corrector_steps",
         s.corrector_steps, "must be an integer >= 0 (0 = no corrector)")
  for key, default in (("sampler", "mean"), ("remask", "none")):
    _check(s[key] == default or name == "diffusion", f"sampling.{key}", s[key],
           f"applies to prior.name='diffusion' (masked diffusion) only; use {default!r} for {name}")
  _check(s.corrector_steps == 0 or name == "uniform_diffusion", "sampling.corrector_steps", s.corrector_steps,
         f"applies to prior.name='uniform_diffusion' only; use 0 for {name}")
  _check(s.sampler != "topp" or s.top_p < 1, "sampling.sampler", s.sampler,
         "'topp' (MD4's topp_sample_step) draws from the top_p nucleus: set sampling.top_p < 1 (MD4: 0.98)")


def _validate_mask_replace(c) -> None:
  p = c.prior
  _check(p.uniform_steps >= 2, "prior.uniform_steps", p.uniform_steps, "must be >= 2 for mask_replace (T)")
  _check(MASK_START <= p.mask_end <= 1, "prior.mask_end", p.mask_end,
         f"must be in [{MASK_START}, 1] (the [MASK] probability at t = T; it starts at {MASK_START})")
  _check(1e-6 <= p.replace_end <= 1, "prior.replace_end", p.replace_end,
         "must be in [1e-6, 1] (the uniform-replacement probability at t = T; it starts at 1e-6)")
  _check(p.mask_end + p.replace_end <= 1 + 1e-12, "prior.replace_end", p.replace_end,
         f"plus prior.mask_end={p.mask_end} must be <= 1 (the rest keeps the code)")
  _check(c.sampling.steps <= p.uniform_steps, "sampling.steps", c.sampling.steps,
         f"must be <= prior.uniform_steps={p.uniform_steps} for mask_replace (its sampler jumps on the T-step chain)")
  _check(c.sampling.purity_weight >= 0, "sampling.purity_weight", c.sampling.purity_weight, "must be >= 0")


def _validate_classifier(c) -> None:
  _check((c.data.name, c.data.image_size, c.data.channels) == ("fashion_mnist", 28, 1), "data",
         (c.data.name, c.data.image_size, c.data.channels), "the feature classifier is built for Fashion-MNIST "
         "(name 'fashion_mnist', image_size 28, channels 1)")
  _one_of(c, "model.architecture", CLASSIFIER_ARCHITECTURES)
  _positive_ints(c, ("model.num_classes",))
  _check(0 <= c.model.dropout < 1, "model.dropout", c.model.dropout, "must be in [0, 1)")
  _check(isinstance(c.model.width, int) and c.model.width >= 8 and c.model.width % 8 == 0, "model.width",
         c.model.width, "must be a multiple of 8 (GroupNorm's 8 groups), >= 8")
  _check(c.model.temperature > 0, "model.temperature", c.model.temperature, "must be > 0")
