"""The one generic training loop. A stage (tokenizer, prior, ...) supplies its model, loss, data and evaluation.

The hot step is a pure function under `jax.jit` with explicit in/out shardings and a donated state; NNX modules
are merged inside it from pure-dict states (see state.py). Randomness is `fold_in(seed key, step)`, so a resumed
run draws the same numbers as an uninterrupted one.
"""

import logging
import os
from typing import Callable, Protocol

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vqgen.train import sharding as sharding_lib
from vqgen.train.checkpoint import Checkpointer, abstract_with_shardings
from vqgen.train.optim import build_optimizer, learning_rate_schedule
from vqgen.train.state import ModelSpec, TrainState, create_train_state, state_shardings
from vqgen.train import writers
from vqgen.train.writers import Progress, create_writer, periodic_actions


class Stage(Protocol):
  """What a training stage provides to the generic loop."""

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module: ...

  def loss(self, model: nnx.Module, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]: ...

  def train_dataset(self, batch_size: int, process_index: int, process_count: int): ...

  def check_data(self) -> None:
    """Opens every split the run will read (raising on missing or corrupt data) before the first step."""

  def evaluate(self, model: Callable[[], nnx.Module], mesh, workdir: str, writer, step: int) -> dict: ...


def make_train_step(spec: ModelSpec, tx: optax.GradientTransformation, loss_fn, ema_decay: float):
  """(state, batch, base_rng) -> (state, metrics). A non-finite loss freezes the state and records the step."""

  def step_fn(state: TrainState, batch: dict, base_rng: jax.Array):
    rng = jax.random.fold_in(base_rng, state.step)

    def objective(params):
      model = spec.merge(params, state.rest)
      loss, metrics = loss_fn(model, batch, rng)
      return loss, (metrics, spec.split(model)[1])

    (loss, (metrics, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = optax.incremental_update(params, ema, step_size=1.0 - ema_decay)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    ok = finite & (state.nonfinite_step < 0)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
    new_state = TrainState(
        step=state.step + ok.astype(jnp.int32), params=keep(params, state.params), rest=keep(rest, state.rest),
        opt_state=keep(opt_state, state.opt_state), ema_params=None if ema is None else keep(ema, state.ema_params),
        nonfinite_step=jnp.where((state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step))
    return new_state, {**metrics, "loss": loss, "grad_norm": grad_norm}

  return step_fn


def save_config(config, workdir: str) -> None:
  """config.json, written atomically (after the checkpoint it describes was found usable)."""
  if jax.process_index() == 0:
    writers.write_text(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2, sort_keys=True))


class NonFiniteLossError(FloatingPointError):
  pass


def _check_finite(state: TrainState, ckpt: Checkpointer):
  bad = int(jax.device_get(state.nonfinite_step))
  if bad >= 0:
    raise NonFiniteLossError(
        f"The loss or gradient became NaN/Inf at step {bad + 1}; training stopped there. The last good checkpoint "
        f"is step {ckpt.latest_step()} in {ckpt.directory} (nothing after the failure was saved). Lower "
        "config.optimizer.learning_rate, enable config.optimizer.grad_clip_norm, or check the data.")


def train_and_evaluate(config, workdir: str, stage: Stage, mesh=None) -> dict:
  """Trains `stage` for config.train.steps (resuming from workdir's checkpoints), then evaluates it."""
  os.makedirs(workdir, exist_ok=True)
  c = config
  mesh = mesh or sharding_lib.make_mesh(c.mesh.data, c.mesh.fsdp, c.mesh.model)
  spec = ModelSpec(stage.build_model, mesh, c.mesh.rules)
  tx = build_optimizer(c.optimizer, c.train.steps)
  o = c.optimizer
  schedule = learning_rate_schedule(o.learning_rate, o.warmup_steps, c.train.steps, o.end_learning_rate_factor)
  init_rng, step_rng = jax.random.split(jax.random.key(c.seed))
  state, shardings = create_train_state(spec, tx, init_rng, use_ema=c.optimizer.ema_decay > 0)
  logging.info("Model: %d parameters; mesh %s", spec.num_params(), dict(mesh.shape))

  stage.check_data()
  local_batch = sharding_lib.per_process_batch_size(c.data.batch_size, mesh)
  data_iter = iter(stage.train_dataset(local_batch, jax.process_index(), jax.process_count()))
  ckpt = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"), keep=c.train.keep_checkpoints)
  restored, restored_step = ckpt.restore(abstract_with_shardings(state, shardings), data_iter, set_aside=True)
  if restored is not None:
    state = restored
    writers.say(f"Resumed from checkpoint step {restored_step}.")
    writers.drop_rows_after(workdir, restored_step)  # the steps after it are trained (and logged) again
  save_config(config, workdir)

  batch_shardings = sharding_lib.batch_sharding(mesh)
  rep = sharding_lib.replicated(mesh)
  train_step = jax.jit(make_train_step(spec, tx, stage.loss, c.optimizer.ema_decay),
                       in_shardings=(shardings, batch_shardings, rep), out_shardings=(shardings, rep),
                       donate_argnums=(0,))
  writer = create_writer(workdir)
  first = int(jax.device_get(state.step))
  progress = Progress(c.train.steps, first)
  actions = periodic_actions(c.train.steps, c.train.log_every, workdir, writer, c.train.profile)
  pending = []
  try:
    for step in range(first + 1, c.train.steps + 1):
      batch = sharding_lib.global_batch(next(data_iter), mesh)
      state, metrics = train_step(state, batch, step_rng)
      pending.append(metrics)
      for action in actions:
        action(step)
      if step % c.train.log_every == 0 or step == c.train.steps:
        _check_finite(state, ckpt)
        summary = jax.tree.map(lambda *xs: sum(float(x) for x in xs) / len(xs), *jax.device_get(pending))
        summary["learning_rate"] = float(schedule(step))
        progress(step, summary)
        writer.write_scalars(step, summary)
        pending = []
      if step % c.train.checkpoint_every == 0 or step == c.train.steps:
        _check_finite(state, ckpt)
        ckpt.save(step, state, data_iter)
  finally:
    ckpt.wait()  # an interrupted run still finishes writing the checkpoints it started

  params = state.ema_params if state.ema_params is not None else state.params
  writers.say(f"Evaluating the model of step {int(jax.device_get(state.step))} ...")
  results = stage.evaluate(lambda: spec.merge(params, state.rest), mesh, workdir, writer,
                           int(jax.device_get(state.step)))
  writer.flush()
  ckpt.close()
  return results


def restore_model(config, workdir: str, stage: Stage, mesh=None) -> nnx.Module:
  """The trained model of a workdir (EMA parameters when kept), from its newest readable checkpoint."""
  mesh = mesh or sharding_lib.make_mesh(devices=jax.devices()[:1])
  spec = ModelSpec(stage.build_model, mesh, config.mesh.rules)
  tx = build_optimizer(config.optimizer, config.train.steps)
  abstract = jax.eval_shape(lambda: create_train_state(spec, tx, jax.random.key(0),
                                                       config.optimizer.ema_decay > 0)[0])
  ckpt = Checkpointer(os.path.join(os.path.abspath(workdir), "checkpoints"))
  state, step = ckpt.restore(abstract_with_shardings(abstract, state_shardings(spec, abstract)))
  ckpt.close()
  if state is None:
    raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints: train first (python -m vqgen.main ...).")
  params = state.ema_params if state.ema_params is not None else state.params
  return spec.merge(params, state.rest)
