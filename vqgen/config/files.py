"""Loading configs: config files (`path.py[:variant]`, as `--config=` loads them), the repository's ready-made
prior configs, and the config a finished run saved in its workdir."""

import importlib.util
import json
import os

import ml_collections

from vqgen.config.schema import ConfigError, classifier_config, prior_config, tokenizer_config

SCHEMAS = {"tokenizer": tokenizer_config, "prior": prior_config, "classifier": classifier_config}


# Each prior family's config file: configs/prior/<file>_<dataset>.py (`make demo PRIOR=...` uses Fashion-MNIST's).
PRIOR_CONFIGS = {"maskgit": "maskgit", "autoregressive": "ar", "diffusion": "diffusion",
                 "uniform_diffusion": "uniform_diffusion", "mask_replace": "mask_replace"}
PRIOR_DATASETS = ("fashion_mnist", "cifar10")


def configs_dir() -> str:
  """The repository's configs/ folder (beside the vqgen package in a checkout)."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"No configs/ folder at {path}: the ready-made config files come with a checkout of "
                            "the repository (an installed wheel has none). Pass a config file's path instead.")
  return path


def prior_config_path(name: str, variant: str = "", dataset: str = "fashion_mnist") -> str:
  """The config spec (file[:variant]) of a prior family on the codes of a dataset's tokenizer (PRIOR_DATASETS)."""
  if dataset not in PRIOR_DATASETS:
    raise ConfigError(f"No prior configs for dataset {dataset!r}; choose one of {PRIOR_DATASETS}.")
  path = os.path.join(configs_dir(), "prior", f"{PRIOR_CONFIGS[name]}_{dataset}.py")
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


def load_workdir_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a run saved in its workdir (config.json), over today's defaults of its stage: a key added to the
  schema after the run was made reads as its default, which is what the run did (e.g. loss.perceptual_weight=0)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: is {workdir!r} the workdir of a vqgen run?")
  restore = "Restore it from a copy, or rewrite it from the config file the run was started with."
  try:
    with open(path) as f:
      saved = json.load(f)
  except ValueError as e:  # json.JSONDecodeError
    raise ConfigError(f"{path} is not valid JSON ({e}): the file is truncated or corrupt. {restore}") from e
  if not isinstance(saved, dict):
    raise ConfigError(f"{path} holds {json.dumps(saved)[:60]}, not a run's config (a JSON object of sections, "
                      f"with its `stage`): the file was overwritten. {restore}")
  return config_from_saved(saved)


def config_from_saved(saved: dict) -> ml_collections.ConfigDict:
  """A saved config (config.json, or the copy a checkpoint carries) over today's defaults of its stage."""
  schema = SCHEMAS.get(saved.get("stage"))
  return ml_collections.ConfigDict(_over(schema().to_dict(), saved) if schema else saved)


def _over(defaults: dict, saved: dict) -> dict:
  """`saved` with the keys it lacks taken from `defaults`; a quantizer section is taken whole (its keys depend on
  the quantizer it names)."""
  out = dict(defaults)
  for key, value in saved.items():
    nested = isinstance(value, dict) and isinstance(defaults.get(key), dict) and key != "quantizer"
    out[key] = _over(defaults[key], value) if nested else value
  return out
