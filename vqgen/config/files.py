"""Loading configs: config files (`path.py[:variant]`, as `--config=` loads them), the repository's ready-made
prior configs, and the config a finished run saved in its workdir."""

import importlib.util
import json
import os

import ml_collections

from vqgen.config.schema import ConfigError


# Each prior family's Fashion-MNIST config file: configs/prior/<file>_fashion_mnist.py (`make demo PRIOR=...`).
PRIOR_CONFIGS = {"maskgit": "maskgit", "autoregressive": "ar", "diffusion": "diffusion",
                 "uniform_diffusion": "uniform_diffusion"}


def configs_dir() -> str:
  """The repository's configs/ folder (beside the vqgen package in a checkout)."""
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"No configs/ folder at {path}: the ready-made config files come with a checkout of "
                            "the repository (an installed wheel has none). Pass a config file's path instead.")
  return path


def prior_config_path(name: str, variant: str = "") -> str:
  """The config spec (file[:variant]) of a prior family on Fashion-MNIST codes."""
  path = os.path.join(configs_dir(), "prior", f"{PRIOR_CONFIGS[name]}_fashion_mnist.py")
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
  """The config a run saved in its workdir (config.json)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: is {workdir!r} the workdir of a vqgen run?")
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except ValueError as e:  # json.JSONDecodeError
    raise ConfigError(f"{path} is not valid JSON ({e}): the file is truncated or corrupt. Restore it from a copy, "
                      "or rewrite it from the config file the run was started with.") from e
