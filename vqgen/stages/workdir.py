"""A run's workdir: checking a config against the run it would resume, and a finished run as another's input."""

import os

from vqgen import config as config_lib
from vqgen.train.trainer import restore_model


def check(config, workdir: str) -> None:
  """Validates `config`; when `workdir` holds a run, refuses (ConfigError) a config that changes what defines it
  (config.resume.MAY_CHANGE lists what may change). Writes nothing."""
  config_lib.validate(config)
  if os.path.exists(os.path.join(workdir, "config.json")):
    allowed = config_lib.check_resume(config_lib.load_workdir_config(workdir), config, workdir)
    for key, old, new in allowed:  # (a plain print: no JAX call may come before jax.distributed.initialize)
      print(f"Resuming with {key} = {new!r} (was {old!r}).", flush=True)


def load_run(workdir: str, stage_class) -> tuple:
  """(config, trained model, stage) of a workdir that `stage_class` (e.g. TokenizerStage) trained."""
  config = config_lib.load_workdir_config(workdir)
  if config.stage != stage_class.NAME:
    raise ValueError(f"{workdir!r} holds a {config.stage!r} run, not a {stage_class.NAME} run.")
  stage = stage_class(config)
  return config, restore_model(config, workdir, stage), stage
