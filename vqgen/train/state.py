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
                       ema_keys: tuple[str, ...] = ()) -> tuple[TrainState, Any]:
  """Initialises the state directly in its shardings (jit with out_shardings); returns (state, shardings).

  `ema_keys`: the top-level parameter keys whose EMA is kept (a GAN keeps the generator's only); () for none.
  """

  def init(rng):
    params, rest = spec.split(spec.build(nnx.Rngs(rng)))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, rest=rest, opt_state=tx.init(params),
                      ema_params={k: params[k] for k in ema_keys} if ema_keys else None,
                      nonfinite_step=jnp.full((), -1, jnp.int32))

  shardings = state_shardings(spec, jax.eval_shape(init, rng))
  return jax.jit(init, out_shardings=shardings)(rng), shardings


def state_shardings(spec: ModelSpec, abstract_state: TrainState) -> TrainState:
  """Parameter-shaped optimizer leaves follow the parameter shardings; other leaves are replicated."""
  rep = sharding_lib.replicated(spec.mesh)
  ema = abstract_state.ema_params
  return TrainState(step=rep, params=spec.param_shardings, rest=spec.rest_shardings,
                    opt_state=_opt_state_shardings(spec, abstract_state.opt_state, rep),
                    ema_params=None if ema is None else {k: spec.param_shardings[k] for k in ema},
                    nonfinite_step=rep)


def _key_name(entry) -> str:
  return str(getattr(entry, "key", getattr(entry, "name", getattr(entry, "idx", entry))))


def _opt_state_shardings(spec, abstract_opt_state, rep):
  """An optimizer leaf whose key path ends with a parameter's path and has its shape (Adam's mu / nu, also
  inside `optax.multi_transform`'s masked states) gets that parameter's sharding; every other leaf is
  replicated."""
  by_path = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(spec.abstract_params):
    by_path[tuple(_key_name(e) for e in path)] = leaf.shape
  shardings = {tuple(_key_name(e) for e in path): s
               for path, s in jax.tree_util.tree_leaves_with_path(spec.param_shardings)}
  lengths = sorted({len(p) for p in by_path}, reverse=True)

  def place(path, leaf):
    names = tuple(_key_name(e) for e in path)
    for n in lengths:
      tail = names[-n:]
      if len(names) >= n and by_path.get(tail) == getattr(leaf, "shape", None):
        return shardings[tail]
    return rep

  return jax.tree_util.tree_map_with_path(place, abstract_opt_state)
