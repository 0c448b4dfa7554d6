"""Config variants: `--config=configs/tokenizer/fsq_fashion_mnist.py:levels=8-5-5-5,steps=500` applies
`key=value` pairs that the config file maps onto config keys (`parse_variant`), with small value parsers."""

import sys

import ml_collections

from vqgen.config.schema import ConfigError

# Variant keys every prior config accepts (`--config=configs/prior/maskgit_fashion_mnist.py:tokenizer=DIR,steps=500`).
PRIOR_VARIANTS = {
    "tokenizer": ("tokenizer_workdir", str),
    "steps": ("train.steps", int),
    "batch_size": ("data.batch_size", int),
    "learning_rate": ("optimizer.learning_rate", float),
    "ema_decay": ("optimizer.ema_decay", float),
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


def parse_variant(arg: str | None, config: ml_collections.ConfigDict, parsers: dict) -> None:
  """Applies `key=value,key=value` to config; `parsers` maps each allowed key to (config path, parse fn).

  A variant that shortens training below the warmup (`:steps=50` against 100 warmup steps) scales the warmup to a
  tenth of the steps, with a warning, so a quick run needs no second override.
  """
  if not arg:
    return
  paths = []
  for item in arg.split(","):
    key, sep, value = item.partition("=")
    if not sep or key not in parsers:
      raise ConfigError(f"Unknown config variant {item!r}; allowed keys: {sorted(parsers)} (as key=value, "
                        "comma separated).")
    path, parse = parsers[key]
    *parents, leaf = path.split(".")
    node = config
    for p in parents:
      node = node[p]
    node[leaf] = parse(value)
    paths.append(path)
  if "train.steps" in paths and "optimizer.warmup_steps" not in paths and "optimizer" in config:
    steps, warmup = config.train.steps, config.optimizer.warmup_steps
    if isinstance(steps, int) and steps >= 1 and warmup >= steps:
      config.optimizer.warmup_steps = steps // 10
      print(f"Note: train.steps={steps} is not above optimizer.warmup_steps={warmup}: warmup set to {steps // 10} "
            "(a tenth).", file=sys.stderr)


def levels_from_string(s: str) -> tuple[int, ...]:
  """'8-5-5-5' -> (8, 5, 5, 5)."""
  try:
    return tuple(int(v) for v in s.split("-"))
  except ValueError as e:
    raise ConfigError(f"levels must be integers joined by '-', e.g. 8-5-5-5; got {s!r}.") from e


def boolean(s: str) -> bool:
  """'true'/'1'/'yes' -> True, 'false'/'0'/'no' -> False (for config variants)."""
  if s.lower() in ("true", "1", "yes"):
    return True
  if s.lower() in ("false", "0", "no"):
    return False
  raise ConfigError(f"expected a boolean (true/false), got {s!r}.")
