"""Train state as a plain pytree (pure dicts of arrays), and its sharded creation.

An NNX model is split once into a static `graphdef` and pure-dict states: `params` (nnx.Param) and `rest`
(everything else: batch statistics, codebook EMAs). The jitted step merges them back (`nnx.merge`), so the hot
path has no NNX Python overhead, and Orbax sees nothing but arrays.
"""

from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from vqgen.train import sharding as sharding_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 scalar: optimizer steps taken
  params: Any
  rest: Any
  opt_state: Any
  ema_params: Any            # None when parameter EMA is off
  nonfinite_step: jax.Array  # int32: first step whose loss was NaN/Inf, else -1; the state froze there


class ModelSpec:
  """The static half of a model: graph definition, abstract states and their shardings on `mesh`."""

  def __init__(self, build: Callable[[nnx.Rngs], nnx.Module], mesh, rules):
    self.build, self.mesh = build, mesh
    abstract = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    self.graphdef, abs_params, abs_rest = nnx.split(abstract, nnx.Param, ...)
    self.abstract_params = abs_params.to_pure_dict()
    self.param_shardings = sharding_lib.param_shardings(
        self.abstract_params, nnx.get_partition_spec(abs_params).to_pure_dict(), rules, mesh)
    self.rest_shardings = jax.tree.map(lambda _: sharding_lib.replicated(mesh), abs_rest.to_pure_dict())

  def merge(self, params, rest) -> nnx.Module:
    return nnx.merge(self.graphdef, params, rest)

  def split(self, model: nnx.Module):
    _, params, rest = nnx.split(model, nnx.Param, ...)
    return params.to_pure_dict(), rest.to_pure_dict()

  def num_params(self) -> int:
    return sum(x.size for x in jax.tree.leaves(self.abstract_params))


def create_train_state(spec: ModelSpec, tx: optax.GradientTransformation, rng: jax.Array,
                       use_ema: bool) -> tuple[TrainState, Any]:
  """Initialises the state directly in its shardings (jit with out_shardings); returns (state, shardings)."""

  def init(rng):
    params, rest = spec.split(spec.build(nnx.Rngs(rng)))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params),
                      ema_params=params if use_ema else None, nonfinite_step=jnp.full((), -1, jnp.int32))

  shardings = state_shardings(spec, jax.eval_shape(init, rng))
  return jax.jit(init, out_shardings=shardings)(rng), shardings


def state_shardings(spec: ModelSpec, abstract_state: TrainState) -> TrainState:
  """Parameter-shaped optimizer leaves follow the parameter shardings; other leaves are replicated."""
  rep = sharding_lib.replicated(spec.mesh)
  opt = _opt_state_shardings(spec, abstract_state.opt_state, rep)
  return TrainState(step=rep, params=spec.param_shardings, rest=spec.rest_shardings, opt_state=opt,
                    ema_params=None if abstract_state.ema_params is None else spec.param_shardings,
                    nonfinite_step=rep)


def _opt_state_shardings(spec, abstract_opt_state, rep):
  """Any sub-tree of the optimizer state with the parameters' structure gets the parameter shardings."""
  param_treedef = jax.tree.structure(spec.abstract_params)

  def visit(node):
    if jax.tree.structure(node) == param_treedef:
      return spec.param_shardings
    if isinstance(node, tuple) and hasattr(node, "_fields"):
      return type(node)(*(visit(x) for x in node))
    if isinstance(node, (tuple, list)):
      return type(node)(visit(x) for x in node)
    if isinstance(node, dict):
      return {k: visit(v) for k, v in node.items()}
    return jax.tree.map(lambda _: rep, node)

  return visit(abstract_opt_state)
