"""Experiment configs: the base `ConfigDict` holding every key the code reads, variants, and validation.

Config files (`configs/**.py`) start from `tokenizer_config()`, apply their variant string
(`--config=configs/tokenizer/fsq_fashion_mnist.py:levels=8-5-5-5,steps=500`) and return the locked dict, so a
flag override of a key that does not exist fails at once (`--config.train.stpes=1`). `validate` then checks
values before any work starts and names the key and what it may be.
"""

import importlib.util
import inspect
import os

import ml_collections

STAGES = ("tokenizer", "prior")
RECONSTRUCTION = ("l1", "l2")
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

  c.model = ml_collections.ConfigDict()
  # The default network folds 4x4 patches into channels and runs every conv on the 7x7 grid (fast on CPUs,
  # docs/results.md); patch_size=1, channel_multipliers=(1, 2, 2) is the classic full-resolution VQGAN encoder.
  c.model.channels = 64
  c.model.patch_size = 4                   # p x p space-to-depth before the encoder (see tokenizers/conv.py)
  c.model.channel_multipliers = (1,)       # len - 1 stride-2 downsamplings after the patch folding
  c.model.num_res_blocks = 2
  c.model.norm_groups = 8
  c.model.pre_quant_norm = "none"
  c.model.compute_dtype = "float32"

  c.quantizer = quantizer_config("fsq", levels=(8, 5, 5, 5))

  c.loss = ml_collections.ConfigDict()
  c.loss.reconstruction = "l2"
  c.loss.reconstruction_weight = 1.0

  add_training_sections(c, rules=(("channels_out", "fsdp"), ("channels_in", "model")))
  return c


# Variant keys every prior config accepts (`--config=configs/prior/maskgit_fashion_mnist.py:tokenizer=DIR,steps=500`).
PRIOR_VARIANTS = {
    "tokenizer": ("tokenizer_workdir", str),
    "steps": ("train.steps", int),
    "batch_size": ("data.batch_size", int),
    "learning_rate": ("optimizer.learning_rate", float),
    "label_smoothing": ("prior.label_smoothing", float),
    "width": ("network.width", int),
    "depth": ("network.depth", int),
    "positions": ("network.positions", str),
    "head": ("network.head", str),
    "num_classes": ("prior.num_classes", int),
    "guidance": ("sampling.guidance_scale", float),
    "guidance_schedule": ("sampling.guidance_schedule", str),
    "sampling_steps": ("sampling.steps", int),
    "num_samples": ("sampling.num_samples", int),
}


def add_training_sections(c: ml_collections.ConfigDict, rules: tuple) -> None:
  """The optimizer / train / mesh sections every stage shares (generic trainer settings)."""
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.learning_rate = 2e-3
  c.optimizer.warmup_steps = 100
  c.optimizer.end_learning_rate_factor = 0.02  # cosine decays to this fraction of the peak
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.99
  c.optimizer.weight_decay = 1e-4
  c.optimizer.grad_clip_norm = 1.0
  c.optimizer.ema_decay = 0.0                  # > 0 keeps an EMA of the parameters, used for evaluation

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

  c.prior = ml_collections.ConfigDict()
  c.prior.name = "maskgit"        # maskgit | autoregressive | diffusion | uniform_diffusion
  c.prior.num_classes = 10        # 0 = unconditional
  c.prior.class_dropout = 0.1     # labels dropped to the null class (classifier-free guidance)
  c.prior.label_smoothing = 0.1   # maskgit / autoregressive
  c.prior.mask_schedule = "cosine"         # maskgit: gamma(r), see priors/schedules.py
  c.prior.min_mask_ratio = 0.0             # maskgit
  c.prior.diffusion_schedule = "linear"    # diffusion: alpha(t)
  c.prior.diffusion_exponent = 2.0         # diffusion 'poly' schedule
  c.prior.time_conditioning = False        # diffusion / uniform_diffusion: adaLN on t (MD4 runs fine without)
  c.prior.uniform_steps = 100              # uniform_diffusion: T of the discrete-time ELBO
  c.prior.aux_weight = 0.01                # uniform_diffusion: D3PM's auxiliary x_0 cross-entropy

  c.network = ml_collections.ConfigDict()
  # Sized for the 2-core CPU demo (about 0.24 s per step at batch 64); scale width/depth up on accelerators.
  c.network.width = 128
  c.network.depth = 4
  c.network.heads = 4
  c.network.mlp_ratio = 4
  c.network.dropout = 0.0         # dropout's random bits cost ~20% of a CPU step; short runs do not overfit
  c.network.positions = "learned"         # learned | 2d
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

  c.evaluation = ml_collections.ConfigDict()
  c.evaluation.metrics = True             # Frechet distance / precision-recall / class accuracy of samples

  add_training_sections(c, rules=(("embed", "fsdp"), ("mlp", "model"), ("heads", "model")))
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b2 = 0.98
  c.optimizer.weight_decay = 0.01
  c.train.steps = 2400
  return c


def parse_variant(arg: str | None, config: ml_collections.ConfigDict, parsers: dict) -> None:
  """Applies `key=value,key=value` to config; `parsers` maps each allowed key to (config path, parse fn)."""
  if not arg:
    return
  for item in arg.split(","):
    key, sep, value = item.partition("=")
    if not sep or key not in parsers:
      raise ValueError(f"Unknown config variant {item!r}; allowed keys: {sorted(parsers)} (as key=value, "
                       "comma separated).")
    path, parse = parsers[key]
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = parse(value)


def levels_from_string(s: str) -> tuple[int, ...]:
  """'8-5-5-5' -> (8, 5, 5, 5)."""
  try:
    return tuple(int(v) for v in s.split("-"))
  except ValueError as e:
    raise ValueError(f"levels must be integers joined by '-', e.g. 8-5-5-5; got {s!r}.") from e


def boolean(s: str) -> bool:
  """'true'/'1'/'yes' -> True, 'false'/'0'/'no' -> False (for config variants)."""
  if s.lower() in ("true", "1", "yes"):
    return True
  if s.lower() in ("false", "0", "no"):
    return False
  raise ValueError(f"expected a boolean (true/false), got {s!r}.")


def _check(ok: bool, key: str, value, allowed: str):
  if not ok:
    raise ValueError(f"Invalid config value {key}={value!r}: {allowed}.")


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
  _positive_ints(c, ("data.batch_size", "data.eval_batch_size", "train.steps", "train.log_every",
                     "train.checkpoint_every", "train.keep_checkpoints"))
  _check(c.data.eval_limit >= 0, "data.eval_limit", c.data.eval_limit, "must be >= 0 (0 = whole split)")
  o = c.optimizer
  _check(o.learning_rate > 0, "optimizer.learning_rate", o.learning_rate, "must be > 0")
  _check(0 <= o.warmup_steps < c.train.steps, "optimizer.warmup_steps", o.warmup_steps,
         f"must be in [0, train.steps={c.train.steps})")
  _check(0 <= o.end_learning_rate_factor <= 1, "optimizer.end_learning_rate_factor",
         o.end_learning_rate_factor, "must be in [0, 1]")
  _check(0 <= o.b1 < 1 and 0 <= o.b2 < 1, "optimizer.b1/b2", (o.b1, o.b2), "must be in [0, 1)")
  _check(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "must be >= 0")
  _check(o.grad_clip_norm >= 0, "optimizer.grad_clip_norm", o.grad_clip_norm, "must be >= 0 (0 = off)")
  _check(0 <= o.ema_decay < 1, "optimizer.ema_decay", o.ema_decay, "must be in [0, 1) (0 = off)")
  for axis in ("data", "fsdp", "model"):
    v = c.mesh[axis]
    _check(isinstance(v, int) and (v >= 1 or v == -1), f"mesh.{axis}", v, "must be a positive integer or -1")
  for rule in c.mesh.rules:
    _check(len(rule) == 2 and rule[1] in ("data", "fsdp", "model", None), "mesh.rules", rule,
           "each rule must be (logical_axis, one of 'data' | 'fsdp' | 'model' | None)")
  (_validate_tokenizer if c.stage == "tokenizer" else _validate_prior)(c)


def _validate_tokenizer(c) -> None:
  from vqgen.quantizers import QUANTIZERS  # pylint: disable=import-outside-toplevel  (the one registry)
  _one_of(c, "quantizer.name", sorted(QUANTIZERS))
  _one_of(c, "loss.reconstruction", RECONSTRUCTION)
  _one_of(c, "model.pre_quant_norm", PRE_QUANT_NORMS)
  _one_of(c, "model.compute_dtype", COMPUTE_DTYPES)
  _positive_ints(c, ("data.image_size", "data.channels", "model.channels", "model.num_res_blocks",
                     "model.norm_groups", "model.patch_size"))
  mults = tuple(c.model.channel_multipliers)
  _check(len(mults) >= 1 and all(isinstance(m, int) and m >= 1 for m in mults), "model.channel_multipliers",
         mults, "must be a non-empty tuple of positive integers")
  factor = c.model.patch_size * 2 ** (len(mults) - 1)
  _check(c.data.image_size % factor == 0, "data.image_size", c.data.image_size,
         f"must be divisible by model.patch_size * 2^(len(model.channel_multipliers) - 1) = {factor}")
  for m in mults:
    width = c.model.channels * m
    _check(width % min(c.model.norm_groups, width) == 0, "model.norm_groups", c.model.norm_groups,
           f"must divide every level's width (channels * multiplier = {width})")
  try:
    from flax import nnx  # pylint: disable=import-outside-toplevel
    nnx.eval_shape(lambda: build_quantizer_from_config(c.quantizer, nnx.Rngs(0)))
  except (ValueError, TypeError) as e:
    raise ValueError(f"Invalid config value quantizer={c.quantizer.to_dict()}: {e}") from e


def _validate_prior(c) -> None:
  # pylint: disable=import-outside-toplevel
  from vqgen.priors import PRIORS, heads, sampling, schedules, transformer
  from vqgen.priors.diffusion import GRIDS
  _one_of(c, "prior.name", PRIORS)
  _one_of(c, "prior.mask_schedule", schedules.MASK_SCHEDULES)
  _one_of(c, "sampling.mask_schedule", schedules.MASK_SCHEDULES)
  _one_of(c, "prior.diffusion_schedule", schedules.ALPHA_SCHEDULES)
  _one_of(c, "sampling.grid", GRIDS)
  _one_of(c, "sampling.guidance_schedule", sampling.GUIDANCE_SCHEDULES)
  _one_of(c, "network.positions", transformer.POSITIONS)
  _one_of(c, "network.head", heads.HEADS)
  _one_of(c, "network.compute_dtype", COMPUTE_DTYPES)
  _positive_ints(c, ("network.width", "network.depth", "network.heads", "network.mlp_ratio",
                     "network.head_groups", "sampling.num_samples", "sampling.batch_size", "sampling.steps"))
  _check(c.network.width % c.network.heads == 0, "network.heads", c.network.heads,
         f"must divide network.width={c.network.width}")
  _check(c.prior.num_classes >= 0, "prior.num_classes", c.prior.num_classes, "must be >= 0 (0 = unconditional)")
  _check(c.prior.num_classes > 0 or (c.prior.class_dropout == 0 and c.sampling.guidance_scale == 1),
         "prior.num_classes", c.prior.num_classes, "0 (unconditional) needs prior.class_dropout=0 and "
         "sampling.guidance_scale=1 (there is no class to drop or guide towards)")
  for key in ("prior.class_dropout", "prior.label_smoothing", "network.dropout"):
    section, name = key.split(".")
    _check(0 <= c[section][name] < 1, key, c[section][name], "must be in [0, 1)")
  _positive_ints(c, ("prior.uniform_steps",))
  _check(c.prior.aux_weight >= 0, "prior.aux_weight", c.prior.aux_weight, "must be >= 0")
  _check(c.prior.name != "uniform_diffusion" or c.network.head == "full", "network.head", c.network.head,
         "must be 'full' for uniform_diffusion (its posterior sums over every code)")
  _check(0 <= c.prior.min_mask_ratio <= 1, "prior.min_mask_ratio", c.prior.min_mask_ratio, "must be in [0, 1]")
  _check(c.sampling.temperature > 0, "sampling.temperature", c.sampling.temperature, "must be > 0")
  _check(0 < c.sampling.top_p <= 1, "sampling.top_p", c.sampling.top_p, "must be in (0, 1]")
  _check(c.sampling.top_k >= 0, "sampling.top_k", c.sampling.top_k, "must be >= 0 (0 = off)")
  _check(c.sampling.guidance_scale >= 0, "sampling.guidance_scale", c.sampling.guidance_scale,
         "must be >= 0 (1 = conditional model, no guidance)")
  _check(c.sampling.guidance_scale == 1 or c.prior.class_dropout > 0, "sampling.guidance_scale",
         c.sampling.guidance_scale, "needs prior.class_dropout > 0 (an unconditional model to guide against)")
  _check(bool(c.tokenizer_workdir), "tokenizer_workdir", c.tokenizer_workdir,
         "must name the workdir of a trained tokenizer (python -m vqgen.main --config=configs/demo.py ...)")


# Each prior family's Fashion-MNIST config file: configs/prior/<file>_fashion_mnist.py (`make demo PRIOR=...`).
PRIOR_CONFIGS = {"maskgit": "maskgit", "autoregressive": "ar", "diffusion": "diffusion",
                 "uniform_diffusion": "uniform_diffusion"}


def prior_config_path(name: str, variant: str = "") -> str:
  """The config spec (file[:variant]) of a prior family on Fashion-MNIST codes."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.path.join(root, "configs", "prior", f"{PRIOR_CONFIGS[name]}_fashion_mnist.py")
  return f"{path}:{variant}" if variant else path


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`path/to/config.py[:variant]` -> its get_config(variant), as `--config=` would load it (for notebooks)."""
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    raise FileNotFoundError(f"Config file {path} does not exist.")
  module_spec = importlib.util.spec_from_file_location("vqgen_config_file", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def quantizer_config(name: str, **kwargs) -> ml_collections.ConfigDict:
  """config.quantizer for `name`: every keyword argument of its constructor with its default, then `kwargs`.

  E.g. quantizer_config('vq', dim=8, codebook_size=1024, gradient='rotation'). Composite quantizers take their
  inner quantizer's arguments as extra keys: quantizer_config('residual', quantizer='fsq', num_quantizers=4,
  levels=(8, 5, 5, 5)).
  """
  from vqgen.quantizers import QUANTIZERS as classes  # pylint: disable=import-outside-toplevel
  if name not in classes:
    raise ValueError(f"Unknown quantizer {name!r}; choose one of {sorted(classes)}.")
  params = inspect.signature(classes[name].__init__).parameters
  c = ml_collections.ConfigDict({"name": name})
  for key, p in params.items():
    if key in ("self", "rngs") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
      continue
    if p.default is None:  # an optional argument stays overridable by flag with its annotated type
      kind = next((t for t in (int, float, str) if t.__name__ in str(p.annotation)), None)
      c[key] = ml_collections.FieldReference(None, field_type=kind) if kind else None
    elif p.default is not p.empty:
      c[key] = p.default
    elif key not in kwargs:
      raise ValueError(f"quantizer {name!r} needs {key}=... in quantizer_config.")
  for key, value in kwargs.items():
    c[key] = value
  return c


def build_quantizer_from_config(qc, rngs):
  """The quantizer module of a config.quantizer section."""
  from vqgen.quantizers import build_quantizer  # pylint: disable=import-outside-toplevel
  kwargs = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in qc.items() if k != "name"}
  return build_quantizer(qc.name, **kwargs) if qc.name == "fsq" else build_quantizer(qc.name, **kwargs, rngs=rngs)
