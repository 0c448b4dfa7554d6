"""The stages a config can run (`config.stage`), and running one: validate, then train and evaluate."""

from vqgen import config as config_lib


def get_stage(config):
  if config.stage == "tokenizer":
    from vqgen.tokenizers.stage import TokenizerStage  # pylint: disable=import-outside-toplevel
    return TokenizerStage(config)
  if config.stage == "prior":
    from vqgen.priors.stage import PriorStage  # pylint: disable=import-outside-toplevel
    return PriorStage(config)
  raise ValueError(f"Unknown config.stage {config.stage!r}; choose one of {list(config_lib.STAGES)}.")


def run(config, workdir: str) -> dict:
  config_lib.validate(config)
  from vqgen.train.trainer import train_and_evaluate  # pylint: disable=import-outside-toplevel
  return train_and_evaluate(config, workdir, get_stage(config))
