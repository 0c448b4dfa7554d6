"""Stages: what the generic trainer trains (`config.stage`), and the one place a config becomes constructor
arguments (build.py). A stage supplies its model, loss, data and evaluation to `vqgen.train.trainer`.

  tokenizer   stage 1: images -> Tokenizer (tokenizer.py)
  prior       stage 2: a frozen tokenizer's cached codes (codes.py) -> prior; samples decoded (generate.py)
  classifier  the in-domain feature network of the sample metrics (classifier.py)
"""

import os

import jax

from vqgen.stages.classifier import ClassifierStage
from vqgen.stages.prior import PriorStage
from vqgen.stages.tokenizer import TokenizerStage
from vqgen.stages.workdir import check, load_run
from vqgen.train.lock import WorkdirLock
from vqgen.train.trainer import train_and_evaluate

STAGES = {s.NAME: s for s in (TokenizerStage, PriorStage, ClassifierStage)}


def get_stage(config, workdir: str | None = None):
  if config.stage not in STAGES:
    raise ValueError(f"Unknown config.stage {config.stage!r}; choose one of {list(STAGES)}.")
  return STAGES[config.stage](config, workdir=workdir)


def train(config, workdir: str) -> dict:
  """Trains the stage of a checked `config` in `workdir` (resuming from its checkpoints) and evaluates it, holding
  the workdir's lock (process 0): a second run into the same workdir is refused while this one lives."""
  os.makedirs(workdir, exist_ok=True)
  lock = WorkdirLock(workdir).acquire() if jax.process_index() == 0 else None
  try:
    return train_and_evaluate(config, workdir, get_stage(config, workdir))
  finally:
    if lock is not None:
      lock.release()


def run(config, workdir: str) -> dict:
  """`check` (valid, and still the workdir's run when resuming), then `train`."""
  check(config, workdir)
  return train(config, workdir)


__all__ = ["STAGES", "ClassifierStage", "PriorStage", "TokenizerStage", "check", "get_stage", "load_run", "run", "train"]
