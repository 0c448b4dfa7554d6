"""The schema: every key a run reads, with its default and meaning, one function per stage.

Config files (`configs/**.py`) start from `tokenizer_config()` / `prior_config()` / `classifier_config()`, apply
their variant string and return the locked dict, so a flag override of a key that does not exist fails at once.
"""

import ml_collections

from vqgen.errors import Refusal
from vqgen.quantizers import COMPOSITES, QUANTIZERS, own_arguments

STAGES = ("tokenizer", "prior", "classifier")
CLASSIFIER_ARCHITECTURES = ("sample_metric", "perceptual", "contrastive")


class ConfigError(Refusal):
  """A config that cannot run as it is; the message names the key and the fix (command lines print it alone)."""
RECONSTRUCTION = ("l1", "l2")
PERCEPTUAL_NETWORKS = ("fashion_mnist", "lpips_vgg16")
DISCRIMINATORS = ("none", "patchgan", "stylegan")
TOKENIZER_NETWORKS = ("conv", "vit")
PRE_QUANT_NORMS = ("none", "layernorm")
COMPUTE_DTYPES = ("float32", "bfloat16")


def tokenizer_config() -> ml_collections.ConfigDict:
  """Every key of a tokenizer run, with the defaults of the Fashion-MNIST FSQ tokenizer."""
  c = ml_collections.ConfigDict()
  c.stage = "tokenizer"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"   # or any prepared TFDS dataset name (cifar10, celeb_a, ...)
  c.data.data_dir = ""            # "" = the default place for the dataset
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.batch_size = 128         # global, across all processes and devices
  c.data.eval_batch_size = 500    # global
  c.data.eval_limit = 0           # 0 = the whole eval split
  c.data.random_flip = False      # mirror training images left-right with probability 1/2 (never the eval split)

  c.model = ml_collections.ConfigDict()
  c.model.name = "conv"                    # conv (tokenizers/conv.py) | vit (tokenizers/vit.py, ViT-VQGAN)
  # The default network folds 4x4 patches into channels and runs every conv on the 7x7 grid (fast on CPUs,
  # docs/results.md); patch_size=1, channel_multipliers=(1, 2, 2) is the classic full-resolution VQGAN encoder.
  c.model.channels = 64
  c.model.patch_size = 4                   # p x p space-to-depth before the encoder (see tokenizers/conv.py)
  c.model.channel_multipliers = (1,)       # len - 1 stride-2 downsamplings after the patch folding
  c.model.num_res_blocks = 2
  c.model.norm_groups = 8
  c.model.attention_levels = ()            # conv: levels with self-attention after every ResBlock (0 = first)
  c.model.mid_attention = False            # conv: VQGAN's self-attention in the middle block
  c.model.activation = "swish"             # conv: swish | relu | gelu
  c.model.downsample = "conv"              # conv: conv (VQGAN's stride-2 conv) | avgpool (MaskGIT)
  c.model.vit_width = 256                  # vit: transformer width; model.patch_size is the ViT patch
  c.model.vit_depth = 4                    # vit: blocks in the encoder and in the decoder (each)
  c.model.vit_heads = 4
  c.model.vit_mlp_ratio = 4
  c.model.vit_positions = "learned"        # vit: learned | 2d (sine-cosine) | rope2d
  c.model.feature_codebook = ""            # VQGAN-LC: .npy [codebook_size, quantizer.feature_dim] of the frozen
                                           # codebook (python -m vqgen.cli.feature_codebook), read at a fresh start
  c.model.pre_quant_norm = "none"
  c.model.compute_dtype = "float32"

  c.quantizer = quantizer_config("fsq", levels=(8, 5, 5, 5))

  c.loss = ml_collections.ConfigDict()  # the VQGAN objective: tokenizers/vqgan.py
  c.loss.reconstruction = "l2"
  c.loss.reconstruction_weight = 1.0
  c.loss.perceptual_weight = 0.0           # > 0 adds LPIPS's distance on loss.perceptual_network's features
  c.loss.perceptual_network = "fashion_mnist"  # vqgen's own, trained once and cached | lpips_vgg16 (local .npz)
  c.loss.perceptual_weights = ""           # lpips_vgg16: the .npz; fashion_mnist: its classifier workdir ("" = cache)
  c.loss.adversarial_weight = 0.0          # > 0 needs discriminator.name; taming's disc_weight 0.8, MaskGIT's 0.1
  c.loss.adaptive_weight = True            # VQGAN eq. 7 on the decoder's last layer; False: lambda = 1
  c.loss.gan_loss = "hinge"                # hinge | non_saturating
  c.loss.discriminator_start = 0           # step from which the adversarial terms are on
  c.loss.lecam_weight = 0.0                # LeCam regularisation (MaskBit: 0.001)
  c.loss.lecam_decay = 0.999
  c.loss.r1_gamma = 0.0                    # R1 penalty gamma (0 = off)
  c.loss.discriminator_input = "raw"       # raw decoder outputs (the references) | clipped to [0, 1] (ours)

  c.discriminator = ml_collections.ConfigDict()
  c.discriminator.name = "none"            # none | patchgan | stylegan (tokenizers/discriminators.py)
  c.discriminator.channels = 64            # patchgan: first layer's width
  c.discriminator.num_layers = 3           # patchgan: stride-2 layers
  c.discriminator.norm = "group"           # patchgan: group | batch | none (see discriminators.py)
  c.discriminator.stylegan_channels = (64, 128, 256, 256)  # stylegan: input conv, then one block per entry
  c.discriminator.optimizer = optimizer_section()
  c.discriminator.optimizer.learning_rate = 1e-4
  c.discriminator.optimizer.warmup_steps = 0
  c.discriminator.optimizer.b1 = 0.5       # taming's Adam betas (it uses them for both networks)
  c.discriminator.optimizer.b2 = 0.9
  c.discriminator.optimizer.weight_decay = 0.0
  c.discriminator.optimizer.grad_clip_norm = 0.0

  add_training_sections(c, rules=(("channels_out", "fsdp"), ("channels_in", "model"), ("embed", "fsdp"),
                                  ("mlp", "model"), ("heads", "model")))
  return c


def optimizer_section() -> ml_collections.ConfigDict:
  """One optimizer: AdamW on a linear-warmup cosine schedule (train/optim.py)."""
  o = ml_collections.ConfigDict()
  o.learning_rate = 2e-3
  o.warmup_steps = 100
  o.end_learning_rate_factor = 0.02  # cosine decays to this fraction of the peak
  o.b1 = 0.9
  o.b2 = 0.99
  o.weight_decay = 1e-4
  o.grad_clip_norm = 1.0
  o.ema_decay = 0.0                  # > 0 keeps an EMA of the parameters, used for evaluation
  return o


def add_training_sections(c: ml_collections.ConfigDict, rules: tuple) -> None:
  """The optimizer / train / mesh sections every stage shares (generic trainer settings)."""
  c.optimizer = optimizer_section()

  c.train = ml_collections.ConfigDict()
  c.train.steps = 3000
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.num_grid_images = 16
  c.train.profile = False         # True: a profiler trace of 5 steps from step 10 into workdir/profile

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1    # -1: all devices not used by the other axes
  c.mesh.fsdp = 1
  c.mesh.model = 1
  # Logical parameter axis -> mesh axis. Dimensions that do not divide the mesh axis stay replicated.
  c.mesh.rules = rules


def prior_config() -> ml_collections.ConfigDict:
  """Every key of a prior run (stage 2), with the defaults of class-conditional MaskGIT on Fashion-MNIST codes."""
  c = ml_collections.ConfigDict()
  c.stage = "prior"
  c.seed = 0
  c.tokenizer_workdir = ""        # the stage-1 run whose frozen tokenizer defines (and extracts) the codes

  c.data = ml_collections.ConfigDict()
  c.data.batch_size = 64          # global, in images (sequences of codes)
  c.data.eval_batch_size = 500
  c.data.eval_limit = 0           # 0 = the whole eval split for the validation loss
  c.data.flip_codes = False       # also train on the codes of the left-right mirrored training images

  c.prior = ml_collections.ConfigDict()
  c.prior.name = "maskgit"        # maskgit | autoregressive | diffusion | uniform_diffusion | mask_replace |
                                  # rq_transformer (stacked codes: Residual / Grouped tokenizers)
  c.prior.num_classes = 10        # 0 = unconditional
  c.prior.class_dropout = 0.1     # labels dropped to the null class (classifier-free guidance)
  c.prior.label_smoothing = 0.1   # maskgit / autoregressive / rq_transformer
  c.prior.mask_schedule = "cosine"         # maskgit: gamma(r), see priors/schedules.py
  c.prior.min_mask_ratio = 0.0             # maskgit
  c.prior.diffusion_schedule = "linear"    # diffusion: alpha(t)
  c.prior.diffusion_exponent = 2.0         # diffusion 'poly' schedule
  c.prior.time_conditioning = False        # diffusion / uniform_diffusion / mask_replace: adaLN on t
  c.prior.uniform_steps = 100              # uniform_diffusion / mask_replace: T of the discrete-time chain and ELBO
  c.prior.aux_weight = 0.01                # uniform_diffusion / mask_replace: the auxiliary x_0 cross-entropy's
                                           # weight (D3PM's lambda; VQ-Diffusion's lambda, on its T-scaled term)
  c.prior.mask_end = 0.9                   # mask_replace: gbar_T, the probability a code is [MASK] at t = T
  c.prior.replace_end = 0.1                # mask_replace: K bbar_T, the probability it is a uniform random code

  c.network = ml_collections.ConfigDict()
  # Sized for the 2-core CPU demo (about 0.24 s per step at batch 64); scale width/depth up on accelerators.
  c.network.width = 128
  c.network.depth = 4
  c.network.depth_layers = 2      # rq_transformer: layers of its depth transformer (network.depth: the spatial one's)
  c.network.heads = 4
  c.network.mlp_ratio = 4
  c.network.dropout = 0.0         # dropout's random bits cost ~20% of a CPU step; short runs do not overfit
  c.network.positions = "learned"         # learned | 2d | rope2d (nn/transformer.py)
  c.network.norm = "layernorm"            # layernorm | rmsnorm
  c.network.mlp = "gelu"                  # gelu | swiglu
  c.network.head = "full"                 # full | factorized | per_bit (large LFQ/BSQ vocabularies)
  c.network.head_groups = 2               # factorized head: bit groups
  c.network.compute_dtype = "float32"

  c.sampling = ml_collections.ConfigDict()  # used by evaluation and as `vqgen.sample` defaults
  c.sampling.num_samples = 1000           # class-balanced when class-conditional
  c.sampling.batch_size = 250
  c.sampling.steps = 8                    # maskgit decoding steps / diffusion steps
  c.sampling.temperature = 1.0
  c.sampling.top_k = 0
  c.sampling.top_p = 1.0
  c.sampling.choice_temperature = 4.5     # maskgit
  c.sampling.mask_schedule = "cosine"     # maskgit decoding schedule
  c.sampling.grid = "cosine"              # diffusion time grid: uniform | cosine
  c.sampling.guidance_scale = 2.0         # 1 = conditional model (convention in priors/sampling.py)
  c.sampling.guidance_schedule = "constant"
  c.sampling.strategy = "ancestral"       # mask_replace: ancestral | purity (Improved VQ-Diffusion)
  c.sampling.purity_weight = 1.0          # mask_replace purity: r, how much purer tokens are sharpened
  c.sampling.sampler = "mean"             # diffusion: mean | ancestral | topp (MD4's step functions, the same law;
                                          # topp needs top_p < 1), see priors/diffusion.py
  c.sampling.remask = "none"              # diffusion: ReMDM remasking of revealed codes: none | cap | rescale | loop
  c.sampling.remask_eta = 0.01            # diffusion remask: eta in [0, 1] (ReMDM's scripts: cap 0.008, rescale 0.015,
                                          # loop 0.02)
  c.sampling.remask_loop = (0.55, 0.05, 0.9)  # diffusion remask 'loop': (t_on, t_off, alpha_on), ReMDM's
  c.sampling.corrector_steps = 0          # uniform_diffusion: forward-backward corrector steps after each step
                                          # (0 = plain ancestral; each adds steps - 1 to the NFE)

  c.evaluation = ml_collections.ConfigDict()
  c.evaluation.metrics = True             # Frechet distance / precision-recall / class accuracy of samples
  # The standard metrics of the samples (docs/inception.md), when given pytorch-fid's FID Inception weights file:
  c.evaluation.inception_weights = ""     # a local .pth / .npz; "" = off (never downloaded)
  c.evaluation.inception_reference = ""   # DATASET:SPLIT or a statistics .npz; "" = the tokenizer's training split
  c.evaluation.num_reference = 0          # the reference split's first N images; 0 = all

  add_training_sections(c, rules=(("embed", "fsdp"), ("mlp", "model"), ("heads", "model")))
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b2 = 0.98
  c.optimizer.weight_decay = 0.01
  c.train.steps = 2400
  return c


def classifier_config() -> ml_collections.ConfigDict:
  """Every key of the in-domain feature classifier's run (evaluation/classifier.py), trained by the generic
  trainer like any stage: 7 epochs of Fashion-MNIST at batch 128 with horizontal flips and feature dropout."""
  c = ml_collections.ConfigDict()
  c.stage = "classifier"
  c.seed = 0

  c.data = ml_collections.ConfigDict()
  c.data.name = "fashion_mnist"   # the network is sized for 28 x 28 x 1 images
  c.data.data_dir = ""
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.batch_size = 128
  c.data.eval_batch_size = 1000
  c.data.eval_limit = 0

  c.model = ml_collections.ConfigDict()
  c.model.architecture = "sample_metric"  # the sample metrics' classifier | perceptual (the loss's) | contrastive
  c.model.num_classes = 10
  c.model.dropout = 0.3           # on the features, in training (sample_metric only)
  c.model.flip = True             # random horizontal flips, in training (sample_metric, perceptual)
  c.model.width = 16              # contrastive only: the encoder's first width (evaluation/contrastive.py)
  c.model.temperature = 0.2       # contrastive only: NT-Xent's temperature

  add_training_sections(c, rules=())
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 0
  c.optimizer.end_learning_rate_factor = 0.0
  c.optimizer.b2 = 0.999
  c.optimizer.grad_clip_norm = 0.0
  c.train.steps = 7 * 468         # 7 epochs of 60000 images
  c.train.log_every = 468
  c.train.checkpoint_every = 1000
  c.train.num_grid_images = 0
  return c


def perceptual_network_config() -> ml_collections.ConfigDict:
  """The run of vqgen's own perceptual network (tokenizers/perceptual_networks.py: FashionPerceptual): a classifier
  of another architecture than the sample metrics' one, trained from another seed, 3 epochs with flips."""
  c = classifier_config()
  c.seed = 1
  c.model.architecture = "perceptual"
  c.model.dropout = 0.0
  c.train.steps = 3 * 468
  return c


def contrastive_config() -> ml_collections.ConfigDict:
  """The run of the self-supervised judge of the sample metrics (evaluation/contrastive.py: ContrastiveEncoder):
  SimCLR on Fashion-MNIST without labels, 1000 steps of 128 images (two views each), NT-Xent at temperature 0.2.
  Its accuracy is the 1-nearest-neighbour accuracy of its features (cosine, 10k training images)."""
  c = classifier_config()
  c.seed = 2
  c.model.architecture = "contrastive"
  c.model.dropout = 0.0
  c.model.flip = False            # the views flip inside the contrastive loss
  c.optimizer.warmup_steps = 100
  c.train.steps = 1000
  c.train.log_every = 250
  return c


def quantizer_config(name: str, **kwargs) -> ml_collections.ConfigDict:
  """config.quantizer for `name`: every keyword argument of its constructor with its default, then `kwargs`.

  E.g. quantizer_config('vq', dim=8, codebook_size=1024, gradient='rotation'). A composite names the family of its
  levels and holds their arguments too: quantizer_config('residual', quantizer='fsq', num_quantizers=4,
  levels=(8, 5, 5, 5)). The section is exactly the keyword arguments of `quantizers.build_quantizer`.
  """
  if name not in QUANTIZERS:
    raise ConfigError(f"Unknown quantizer {name!r}; choose one of {sorted(QUANTIZERS)}.")
  c = ml_collections.ConfigDict({"name": name})
  params = own_arguments(name)
  if name in COMPOSITES:
    inner = kwargs.get("quantizer")
    singles = sorted(set(QUANTIZERS) - set(COMPOSITES))
    if inner not in singles:
      raise ConfigError(f"quantizer {name!r} needs quantizer=<the family of its levels>, one of {singles}.")
    c["quantizer"] = inner
    params = {**own_arguments(inner), **params}
  for key, p in params.items():
    if p.default is None:  # an optional argument stays overridable by flag with its annotated type
      kind = next((t for t in (int, float, str) if t.__name__ in str(p.annotation)), None)
      c[key] = ml_collections.FieldReference(None, field_type=kind) if kind else None
    elif p.default is not p.empty:
      c[key] = p.default
    elif key not in kwargs:
      raise ConfigError(f"quantizer {name!r} needs {key}=... in quantizer_config.")
  for key, value in kwargs.items():
    c[key] = value
  return c
