"""A run's workdir: checking a config against the run it would resume, a finished run as another's input, and
vqgen's cache folder."""

import os

from vqgen import config as config_lib
from vqgen.errors import Refusal
from vqgen.train.checkpoint import saved_config
from vqgen.train.trainer import restore_model


def cache_dir() -> str:
  """vqgen's cache folder (networks, code caches): $VQGEN_CACHE_DIR, default ~/.cache/vqgen."""
  return os.environ.get("VQGEN_CACHE_DIR") or os.path.expanduser("~/.cache/vqgen")


def _check_writable(workdir: str) -> None:
  """Refuses a workdir that is a file, or that this user cannot create or write (before anything is written)."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise Refusal(f"--workdir={workdir} is a file, not a folder: choose a folder (it is created when missing).")
  folder = os.path.abspath(workdir)
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder):
    raise Refusal(f"--workdir={workdir} cannot be created: {folder} is a file.")
  if not os.access(folder, os.W_OK | os.X_OK):
    raise Refusal(f"--workdir={workdir} is not writable ({folder} is read-only for this user): choose a folder you "
                  "can write, or copy the run there to resume it.")


def run_config(workdir: str):
  """The config of the run in `workdir`: its config.json, else the copy its newest verified checkpoint carries
  (a run whose config.json was deleted is still checked against what trained it); None when it holds no run."""
  if os.path.exists(os.path.join(workdir, "config.json")):
    return config_lib.load_workdir_config(workdir)
  found = saved_config(os.path.join(workdir, "checkpoints"))
  if found is None:
    return None
  print(f"{workdir}/config.json is missing: checking against the config saved with checkpoint step {found[0]}.",
        flush=True)
  return config_lib.config_from_saved(found[1])


def check(config, workdir: str) -> None:
  """Validates `config`; when `workdir` holds a run, refuses (ConfigError) a config that changes what defines it
  (config.resume.MAY_CHANGE lists what may change). Writes nothing."""
  config_lib.validate(config)
  _check_writable(workdir)
  saved = run_config(workdir)
  if saved is not None:
    allowed = config_lib.check_resume(saved, config, workdir)
    for key, old, new in allowed:  # (a plain print: no JAX call may come before jax.distributed.initialize)
      print(f"Resuming with {key} = {new!r} (was {old!r}).", flush=True)


def load_run(workdir: str, stage_class, step: int | None = None, with_step: bool = False) -> tuple:
  """(config, trained model, stage) of a workdir that `stage_class` (e.g. TokenizerStage) trained: its newest
  verified checkpoint, or exactly `step`; the model is (model, step) `with_step`."""
  if not os.path.isdir(workdir):
    raise Refusal(f"{workdir} does not exist (or is not a folder): expected the workdir of a trained "
                  f"{stage_class.NAME} run.")
  config = run_config(workdir)
  if config is None:
    raise Refusal(f"{workdir} holds no vqgen run (no config.json, no checkpoint): expected the workdir of a trained "
                  f"{stage_class.NAME} run (python -m vqgen.main --config=... --workdir=...).")
  if config.get("stage") != stage_class.NAME:
    raise Refusal(f"{workdir} holds a {config.get('stage')!r} run, not a {stage_class.NAME} run.")
  stage = stage_class(config, workdir=workdir)
  return config, restore_model(config, workdir, stage, step=step, with_step=with_step), stage
