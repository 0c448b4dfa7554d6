"""The one generic training loop. A stage (tokenizer, prior, ...) supplies its model, loss, data and evaluation.

The hot step is a pure function under `jax.jit` with explicit in/out shardings and a donated state; NNX modules
are merged inside it from pure-dict states (see state.py). Randomness is `fold_in(seed key, step)`, so a resumed
run draws the same numbers as an uninterrupted one.
"""

import contextlib
import json
import logging
import os
import signal
import threading
from typing import Callable, Protocol

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from vqgen.errors import Interrupted, Refusal
from vqgen.train import sharding as sharding_lib
from vqgen.train.checkpoint import Checkpointer, abstract_with_shardings, saved_config, step_folders, verify_step
from vqgen.train.optim import schedule_of
from vqgen.train.state import TrainState, create_train_state, state_shardings
from vqgen.train.step import StepContext, build_training, ema_decays, eval_params, model_and_optimizer
from vqgen.train import writers
from vqgen.train.writers import Progress, create_writer, periodic_actions


class Stage(Protocol):
  """What a training stage provides to the generic loop."""

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

  def loss(self, model: nnx.Module, batch: dict, ctx: StepContext) -> tuple[jax.Array, dict]: ...

  def train_dataset(self, batch_size: int, process_index: int, process_count: int): ...

  def check_data(self) -> None:
    """Opens every split the run will read (raising on missing or corrupt data) before the first step."""

  def evaluate(self, model: Callable[[], nnx.Module], mesh, workdir: str, writer, step: int) -> dict: ...

  # Optional: `param_groups() -> {name: optim.ParamGroup}` (several optimizers, e.g. generator and discriminator),
  # `frozen() -> pytree` (arrays the loss reads but never trains), `export(model) -> model` (what a trained
  # run hands on, e.g. the tokenizer without its discriminator) and `initialize(state, spec) -> state` (a fresh
  # run's state completed from files, e.g. VQGAN-LC's frozen codebook; a resumed run keeps its checkpoint's).


def save_config(config, workdir: str) -> None:
  """config.json, written atomically (after the checkpoint it describes was found usable)."""
  if jax.process_index() == 0:
    writers.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2, sort_keys=True))


class NonFiniteLossError(Refusal, FloatingPointError):
  """The loss or a gradient became NaN/Inf: training stops at that step, nothing after it is saved."""


@contextlib.contextmanager
def stop_requests():
  """The names of the SIGINT/SIGTERM signals received while inside (the loop checks between steps, saves and
  stops); a second SIGINT interrupts at once. A no-op outside the main thread, where Python takes no signals."""
  received = []
  if threading.current_thread() is not threading.main_thread():
    yield received
    return
  previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

  def handler(signum, frame):
    del frame
    received.append(signal.Signals(signum).name)
    signal.signal(signal.SIGINT, previous[signal.SIGINT])  # a second Ctrl-C is not delayed

  for sig in previous:
    signal.signal(sig, handler)
  try:
    yield received
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


def stop_agreed(received: list, step: int, every: int) -> bool:
  """Whether every process stops after `step`: one process alone decides; several agree at every `every`-th step
  (an all-gather of their flags), so that a signal reaching them at different steps (or only one of them) stops all
  of them after the same step, and their collective save matches."""
  if jax.process_count() == 1:
    return bool(received)
  if step % every:
    return False
  return bool(np.max(multihost_utils.process_allgather(np.int32(bool(received)))))


def _check_finite(state: TrainState, ckpt: Checkpointer):
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    raise NonFiniteLossError(
        f"The loss or gradient became NaN/Inf at step {bad + 1}; training stopped there. The last good checkpoint "
        f"is step {ckpt.latest_step()} in {ckpt.directory} (nothing after the failure was saved). Lower "
        "config.optimizer.learning_rate, enable config.optimizer.grad_clip_norm, or check the data.")


EVALUATION_KEYS = ("sampling", "evaluation", "data.eval_batch_size", "data.eval_limit")  # what metrics.json depends on


def _setting(config: dict, key: str):
  """config["a"]["b"] for key "a.b" (None where absent)."""
  for part in key.split("."):
    config = config.get(part) if isinstance(config, dict) else None
  return config


def finished_results(config, workdir: str) -> dict | None:
  """The metrics.json of a run that has finished (its newest checkpoint, verified, is the last step): the same
  command again has nothing to do, and builds nothing. None when the run has not finished. Refused when the command
  changes how the run is evaluated: that would replace its samples and scores, which other commands make."""
  directory = os.path.join(workdir, "checkpoints")
  steps, metrics = step_folders(directory), os.path.join(workdir, "metrics.json")
  if (not steps or steps[-1] < config.train.steps or not os.path.exists(metrics)
      or verify_step(os.path.join(directory, str(steps[-1]))) is not None):
    return None
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    saved = writers.read_json(path)
  else:  # (config.json deleted: the copy the checkpoint carries)
    found = saved_config(directory)
    saved = found[1] if found else {}
  new = json.loads(config.to_json_best_effort())
  changed = [key for key in EVALUATION_KEYS if _setting(saved, key) != _setting(new, key)]
  if changed:
    raise Refusal(f"{workdir} holds a finished run; evaluating it again with other {', '.join(changed)} settings "
                  "would replace its samples.npz and metrics.json. Sample it into another folder instead: python -m "
                  f"vqgen.sample --workdir={workdir} --output=<folder> [--metrics] [sampler flags].")
  writers.say(f"{workdir} has finished (step {steps[-1]}): its results are in metrics.json.")
  return writers.read_json(metrics)


def train_and_evaluate(config, workdir: str, stage: Stage, mesh=None) -> dict:
  """Trains `stage` for config.train.steps (resuming from workdir's checkpoints), then evaluates it."""
  os.makedirs(workdir, exist_ok=True)
  finished = finished_results(config, workdir)
  if finished is not None:
    return finished
  c = config
  mesh = mesh or sharding_lib.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.model)
  stage.check_data()  # a missing dataset fails before the model is built and compiled
  init_rng, step_rng = jax.random.split(jax.random.key(c.seed))
  training = build_training(c, stage, mesh, init_rng)
  state, shardings, spec = training.state, training.shardings, training.spec
  schedules = {name: schedule_of(g.optimizer, c.train.steps) for name, g in training.groups.items()}
  logging.info("Model: %d parameters; mesh %s", spec.num_params(), dict(mesh.shape))

  local_batch = sharding_lib.per_process_batch_size(c.data.batch_size, mesh)
  data_iter = iter(stage.train_dataset(local_batch, jax.process_index(), jax.process_count()))
  ckpt = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"), keep=c.train.keep_checkpoints)
  restored, restored_step = ckpt.restore(abstract_with_shardings(state, shardings), data_iter, set_aside=True)
  if restored is not None:
    state = restored
    writers.say(f"Resumed from checkpoint step {restored_step}.")
    writers.drop_rows_after(workdir, restored_step)  # the steps after it are trained (and logged) again
  else:
    writers.drop_rows_after(workdir, 0)  # rows of a run killed before its first save are trained again
    if hasattr(stage, "initialize"):  # a fresh run's state from files (e.g. VQGAN-LC's frozen codebook)
      state = jax.device_put(stage.initialize(state, spec), shardings)
  save_config(config, workdir)

  writer = create_writer(workdir)
  first = int(jax.device_get(state.step))
  progress = Progress(c.train.steps, first)
  actions = periodic_actions(c.train.steps, c.train.log_every, workdir, writer, c.train.profile)
  pending = []
  config_json = json.loads(config.to_json_best_effort())  # each checkpoint carries the config that wrote it
  try:
    with stop_requests() as stop:
      for step in range(first + 1, c.train.steps + 1):
        batch = sharding_lib.global_batch(next(data_iter), mesh)
        state, metrics = training.step(state, batch, step_rng)
        ckpt.check()  # a failed save stops the run here, not one checkpoint interval later
        pending.append(metrics)
        for action in actions:
          action(step)
        if step % c.train.log_every == 0 or step == c.train.steps:
          _check_finite(state, ckpt)
          summary = jax.tree.map(lambda *xs: sum(float(x) for x in xs) / len(xs), *jax.device_get(pending))
          for name, schedule in schedules.items():
            summary["learning_rate" if len(schedules) == 1 else f"learning_rate/{name}"] = float(schedule(step))
          progress(step, summary)
          writer.write_scalars(step, summary)
          pending = []
        stopping = stop_agreed(stop, step, c.train.log_every)
        if step % c.train.checkpoint_every == 0 or step == c.train.steps or stopping:
          _check_finite(state, ckpt)
          ckpt.save(step, state, data_iter, config_json)
        if stopping and step < c.train.steps:
          ckpt.wait()
          writer.flush()
          raise Interrupted(f"Stopped by {stop[0] if stop else 'a signal to another process'} after step {step}, which is saved in {ckpt.directory}; run the "
                            "same command to resume.")
  except BaseException:
    with contextlib.suppress(Refusal):  # (the error being raised says what went wrong)
      ckpt.wait()  # an interrupted run still finishes writing the checkpoint it started
    raise
  ckpt.wait()

  params = training.eval_params(state)
  writers.say(f"Evaluating the model of step {int(jax.device_get(state.step))} ...")
  results = stage.evaluate(lambda: export(stage, spec.merge(params, state.rest)), mesh, workdir, writer,
                           int(jax.device_get(state.step)))
  writer.flush()
  ckpt.close()
  return results


def export(stage, model: nnx.Module) -> nnx.Module:
  """What a trained run hands on (`stage.export`, e.g. a tokenizer without its discriminator)."""
  return stage.export(model) if hasattr(stage, "export") else model


def restore_model(config, workdir: str, stage: Stage, mesh=None, step: int | None = None, with_step: bool = False):
  """The trained model of a workdir (EMA parameters where kept, exported), from its newest verified checkpoint or
  exactly `step`; (model, step) `with_step`. Reads only: the workdir may be read-only."""
  mesh = mesh or sharding_lib.make_mesh(devices=jax.devices()[:1])
  spec, groups, group_of, tx = model_and_optimizer(config, stage, mesh)
  abstract = jax.eval_shape(
      lambda: create_train_state(spec, tx, jax.random.key(0), tuple(ema_decays(groups, group_of)))[0])
  directory = os.path.join(os.path.abspath(workdir), "checkpoints")
  if not os.path.isdir(directory):
    raise Refusal(f"No checkpoint in {workdir}: the run has not saved a step yet. Train it first "
                  f"(python -m vqgen.main --config=... --workdir={workdir}).")
  ckpt = Checkpointer(directory, read_only=True)
  state, step = ckpt.restore(abstract_with_shardings(abstract, state_shardings(spec, abstract)), step=step)
  ckpt.close()
  if state is None:
    raise Refusal(f"No checkpoint in {workdir}/checkpoints: the run has not saved a step yet. Train it first "
                  f"(python -m vqgen.main --config=... --workdir={workdir}).")
  model = export(stage, spec.merge(eval_params(state), state.rest))
  return (model, step) if with_step else model
