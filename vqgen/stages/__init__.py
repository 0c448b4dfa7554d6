"""Stages: what the generic trainer trains (`config.stage`), and the one place a config becomes constructor
arguments (build.py). A stage supplies its model, loss, data and evaluation to `vqgen.train.trainer`.

  tokenizer   stage 1: images -> Tokenizer (tokenizer.py)
  prior       stage 2: a frozen tokenizer's cached codes (codes.py) -> prior; samples decoded (generate.py)
  classifier  the in-domain feature network of the sample metrics (classifier.py)
"""

from vqgen import config as config_lib
from vqgen.stages.classifier import ClassifierStage
from vqgen.stages.prior import PriorStage
from vqgen.stages.tokenizer import TokenizerStage
from vqgen.stages.workdir import load_run
from vqgen.train.trainer import train_and_evaluate

STAGES = {s.NAME: s for s in (TokenizerStage, PriorStage, ClassifierStage)}


def get_stage(config):
  if config.stage not in STAGES:
    raise ValueError(f"Unknown config.stage {config.stage!r}; choose one of {list(STAGES)}.")
  return STAGES[config.stage](config)


def run(config, workdir: str) -> dict:
  """Validates `config`, then trains its stage in `workdir` (resuming from its checkpoints) and evaluates it."""
  config_lib.validate(config)
  return train_and_evaluate(config, workdir, get_stage(config))


__all__ = ["STAGES", "ClassifierStage", "PriorStage", "TokenizerStage", "get_stage", "load_run", "run"]
