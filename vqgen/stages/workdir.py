"""A finished run's workdir as inputs to another: its saved config and its trained model."""

from vqgen import config as config_lib
from vqgen.train.trainer import restore_model


def load_run(workdir: str, stage_class) -> tuple:
  """(config, trained model, stage) of a workdir that `stage_class` (e.g. TokenizerStage) trained."""
  config = config_lib.load_workdir_config(workdir)
  if config.stage != stage_class.NAME:
    raise ValueError(f"{workdir!r} holds a {config.stage!r} run, not a {stage_class.NAME} run.")
  stage = stage_class(config)
  return config, restore_model(config, workdir, stage), stage
