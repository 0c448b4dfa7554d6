"""Device mesh, parameter placement from logical axis names, and global batches from per-process data."""

import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # the batch dimension is split over both data-parallel axes


def make_mesh(data: int = -1, fsdp: int = 1, model: int = 1, devices=None) -> jax.sharding.Mesh:
  """A (data, fsdp, model) mesh with Auto axes; -1 on `data` takes the devices the other axes leave."""
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  if data == -1:
    if n % (fsdp * model):
      raise ValueError(f"mesh fsdp={fsdp} x model={model} does not divide the {n} available devices.")
    data = n // (fsdp * model)
  if data * fsdp * model != n:
    raise ValueError(f"mesh data={data} x fsdp={fsdp} x model={model} = {data * fsdp * model} devices, but "
                     f"{n} are available; set config.mesh.data=-1 to use all of them.")
  return jax.make_mesh((data, fsdp, model), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def logical_to_mesh(spec: P, shape, rules, mesh) -> P:
  """Maps a PartitionSpec of logical names through `rules`; a dim the mesh axis does not divide stays whole."""
  rules = dict(rules)
  out, used = [], set()
  for name, size in zip(tuple(spec) + (None,) * (len(shape) - len(spec)), shape):
    axis = rules.get(name) if name is not None else None
    if axis is None or axis in used or size % mesh.shape[axis] or mesh.shape[axis] == 1:
      out.append(None)
    else:
      out.append(axis)
      used.add(axis)
  return P(*out)


def param_shardings(abstract_params, logical_specs, rules, mesh):
  """NamedShardings for a params pytree from its logical PartitionSpecs (same structure)."""
  is_spec = lambda x: isinstance(x, P)
  specs = jax.tree.map(lambda s, a: logical_to_mesh(s, a.shape, rules, mesh), logical_specs, abstract_params,
                       is_leaf=is_spec)
  return jax.tree.map(lambda s: NamedSharding(mesh, s), specs, is_leaf=is_spec)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def batch_divisor(mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def global_batch(local_batch: dict, mesh) -> dict:
  """Per-process numpy batch -> global jax.Arrays sharded on the batch axis (works on one or many hosts)."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def batch_multiple(mesh) -> int:
  """Global batch sizes must be multiples of this: every process and batch-axis device gets whole rows."""
  return math.lcm(batch_divisor(mesh), jax.process_count())


def process_rows(global_size: int, mesh) -> slice:
  """The rows of a global batch that this process feeds to `global_batch`."""
  local = per_process_batch_size(global_size, mesh)
  return slice(jax.process_index() * local, (jax.process_index() + 1) * local)


def to_host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-host sharded) array on every host."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def per_process_batch_size(global_size: int, mesh) -> int:
  """Checks that a global batch splits evenly over processes and batch-axis devices."""
  procs, div = jax.process_count(), batch_divisor(mesh)
  if global_size % procs or global_size % div:
    raise ValueError(f"Global batch size {global_size} must be divisible by the number of processes ({procs}) "
                     f"and by the batch-axis devices (data x fsdp = {div}).")
  return global_size // procs
