"""Stages: what the generic trainer trains (`config.stage`), and the one place a config becomes constructor
arguments (build.py). A stage supplies its model, loss, data and evaluation to `vqgen.train.trainer`.

  tokenizer   stage 1: images -> Tokenizer (tokenizer.py)
  prior       stage 2: a frozen tokenizer's cached codes (codes.py) -> prior; samples decoded (generate.py)
  classifier  the in-domain feature network of the sample metrics (classifier.py)
"""

from vqgen.stages.classifier import ClassifierStage
from vqgen.stages.prior import PriorStage
from vqgen.stages.tokenizer import TokenizerStage
from vqgen.stages.workdir import check, load_run
from vqgen.train.trainer import train_and_evaluate

STAGES = {s.NAME: s for s in (TokenizerStage, PriorStage, ClassifierStage)}


def get_stage(config):
  if config.stage not in STAGES:
    raise ValueError(f"Unknown config.stage {config.stage!r}; choose one of {list(STAGES)}.")
  return STAGES[config.stage](config)


def train(config, workdir: str) -> dict:
  """Trains the stage of a checked `config` in `workdir` (resuming from its checkpoints) and evaluates it."""
  return train_and_evaluate(config, workdir, get_stage(config))


def run(config, workdir: str) -> dict:
  """`check` (valid, and still the workdir's run when resuming), then `train`."""
  check(config, workdir)
  return train(config, workdir)


__all__ = ["STAGES", "ClassifierStage", "PriorStage", "TokenizerStage", "check", "get_stage", "load_run", "run", "train"]
