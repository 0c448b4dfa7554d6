"""The jitted training step and everything it is built from (spec, optimizer, sharded state).

A stage's loss is `loss(model, batch, ctx)` with `ctx` a `StepContext`: the step's random key (`fold_in(seed key,
step)`, so a resumed run draws the same numbers), the step number (a traced scalar: schedules such as a
discriminator's start use it) and the stage's frozen arrays (`stage.frozen()`: networks the loss uses but never
trains, e.g. a perceptual network; passed replicated, never checkpointed).

The gradient of the summed objective is taken once for all parameter groups; a group's parameters receive the
gradient of the terms that depend on them (a GAN's generator terms see the discriminator through
`stop_gradient`, its discriminator terms see stop-gradient reconstructions), and each group's optimizer
updates them (train/optim.py).
"""

import dataclasses
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from vqgen.train import sharding as sharding_lib
from vqgen.train.optim import build_optimizer, group_of_keys, param_groups
from vqgen.train.state import ModelSpec, TrainState, create_train_state


@flax.struct.dataclass
class StepContext:
  rng: jax.Array
  step: jax.Array  # int32 scalar: optimizer steps taken before this one
  frozen: Any      # stage.frozen(), or None


def make_train_step(spec: ModelSpec, tx: optax.GradientTransformation, loss_fn, ema_decays: dict,
                    group_of: dict):
  """(state, batch, base_rng, frozen) -> (state, metrics). A non-finite loss freezes the state and records the
  step. `ema_decays`: {top-level key: decay} of the parameters with an EMA; `group_of`: {top-level key: group}."""
  groups = sorted(set(group_of.values()))

  def step_fn(state: TrainState, batch: dict, base_rng: jax.Array, frozen):
    ctx = StepContext(rng=jax.random.fold_in(base_rng, state.step), step=state.step, frozen=frozen)

    def objective(params):
      model = spec.merge(params, state.rest)
      loss, metrics = loss_fn(model, batch, ctx)
      return loss, (metrics, spec.split(model)[1])

    (loss, (metrics, rest)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      ema = {k: optax.incremental_update(params[k], v, step_size=1.0 - ema_decays[k]) for k, v in ema.items()}
    grad_norm = optax.tree.norm(grads)
    if len(groups) > 1:
      for g in groups:
        metrics[f"grad_norm/{g}"] = optax.tree.norm({k: v for k, v in grads.items() if group_of[k] == g})
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    ok = finite & (state.nonfinite_step < 0)
    keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
    new_state = TrainState(
        step=state.step + ok.astype(jnp.int32), params=keep(params, state.params), rest=keep(rest, state.rest),
        opt_state=keep(opt_state, state.opt_state), ema_params=None if ema is None else keep(ema, state.ema_params),
        nonfinite_step=jnp.where((state.nonfinite_step < 0) & ~finite, state.step, state.nonfinite_step))
    return new_state, {**metrics, "loss": loss, "grad_norm": grad_norm}

  return step_fn


@dataclasses.dataclass
class Training:
  """A stage's model spec, optimizer, initial sharded state and jitted step on one mesh.

  `step(state, global_batch, base_rng) -> (state, metrics)` donates the state it is given.
  """
  spec: ModelSpec
  tx: optax.GradientTransformation
  groups: dict
  state: TrainState
  shardings: TrainState
  frozen: Any
  jitted: Any

  def step(self, state, batch, base_rng):
    return self.jitted(state, batch, base_rng, self.frozen)

  def eval_params(self, state: TrainState):
    return eval_params(state)


def eval_params(state: TrainState) -> dict:
  """The parameters to evaluate: the EMA where one is kept, the trained ones elsewhere."""
  return {**state.params, **(state.ema_params or {})}


def ema_decays(groups: dict, group_of: dict) -> dict:
  """{top-level key: decay} of the keys whose group keeps a parameter EMA (optimizer.ema_decay > 0)."""
  return {k: groups[g].optimizer.ema_decay for k, g in group_of.items() if groups[g].optimizer.ema_decay > 0}


def model_and_optimizer(config, stage, mesh) -> tuple:
  """(spec, parameter groups, {top-level key: group}, optimizer) of `stage` on `mesh`."""
  spec = ModelSpec(stage.build_model, mesh, config.mesh.rules)
  groups = param_groups(stage, config)
  group_of = group_of_keys(groups, spec.abstract_params)
  return spec, groups, group_of, build_optimizer(groups, config.train.steps)


def build_training(config, stage, mesh, rng=None, donate: bool = True) -> Training:
  """Everything the loop needs for `stage` on `mesh` (rng: the parameter-init key, default key(0))."""
  spec, groups, group_of, tx = model_and_optimizer(config, stage, mesh)
  decays = ema_decays(groups, group_of)
  state, shardings = create_train_state(spec, tx, jax.random.key(0) if rng is None else rng, tuple(decays))
  rep = sharding_lib.replicated(mesh)
  frozen = getattr(stage, "frozen", lambda: None)()
  if frozen is not None:
    frozen = jax.device_put(frozen, rep)
  jitted = jax.jit(make_train_step(spec, tx, stage.loss, decays, group_of),
                   in_shardings=(shardings, sharding_lib.batch_sharding(mesh), rep, rep),
                   out_shardings=(shardings, rep), donate_argnums=(0,) if donate else ())
  return Training(spec, tx, groups, state, shardings, frozen, jitted)
