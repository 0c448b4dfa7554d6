"""Sampling a prior and decoding with its tokenizer, in fixed-size jitted batches; sample files and grids.

`samples.npz` holds `tokens` int32 [N, h, w(, levels)], `images` float32 [N, H, W, C] in [0, 1] and `labels`
int32 [N] (the null class C for unconditional samples). The PNG grid has one row per class.
"""

import os
import time
import zipfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen import images as images_lib
from vqgen.errors import Refusal
from vqgen.train import sharding as sharding_lib


class SamplingOutOfMemory(Refusal):
  """A sampling batch that does not fit in device memory; the message names the setting to lower."""


def read_npz(path: str, names: tuple, optional: tuple = ()) -> dict:
  """The arrays `names` (and those of `optional` it holds) of an .npz file; ValueError in one line when the file is
  missing, not an .npz, truncated or corrupt, or lacks an array."""
  write = f"np.savez(path, {', '.join(f'{name}=...' for name in names)})"
  unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
  corrupt = lambda e: ValueError(f"{path} is not a readable .npz ({type(e).__name__}: {e}): truncated or corrupt? "
                                 f"Write it again ({write}).")
  if not os.path.isfile(path):
    raise ValueError(f"{path} does not exist.")
  try:
    f = np.load(path)
  except unreadable as e:
    raise corrupt(e) from e
  if not isinstance(f, np.lib.npyio.NpzFile):
    raise ValueError(f"{path} holds a single array (.npy), not named arrays: write it with {write}.")
  with f:
    missing = [name for name in names if name not in f.files]
    if missing:
      raise ValueError(f"{path} has no `{'`, `'.join(missing)}` array (it holds {', '.join(f.files) or 'none'}): "
                       f"write it with {write}.")
    try:
      return {name: f[name] for name in (*names, *optional) if name in f.files}
    except unreadable as e:  # a member cut short or with flipped bytes
      raise corrupt(e) from e


def check_codes(codes, codebook_size: int | None = None, shape: tuple | None = None) -> np.ndarray:
  """Editing codes as int32: integers, of `shape` when given, each a code in [0, codebook_size) or codebook_size
  itself (the prior's mask id: to be sampled); without a codebook size only negatives are refused. ValueError naming
  the first offending position and value otherwise."""
  codes = np.asarray(codes)
  if not np.issubdtype(codes.dtype, np.integer):
    raise ValueError(f"codes are {codes.dtype}; expected integers (code ids, and the codebook size where a code is "
                     "to be sampled).")
  if shape is not None and codes.shape != tuple(shape):
    raise ValueError(f"codes must be [{', '.join(map(str, shape))}] (the samples, then the code shape), got "
                     f"{list(codes.shape)}.")
  bad = (codes < 0) | (codes > codebook_size) if codebook_size is not None else codes < 0
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    allowed = f"in [0, {codebook_size}] ({codebook_size} = to be sampled)" if codebook_size is not None else ">= 0"
    raise ValueError(f"codes[{', '.join(map(str, where))}] = {codes[where]} is not a code id: each must be {allowed} "
                     f"(outside: {int(bad.sum())} of {codes.size}).")
  return codes.astype(np.int32)


def out_of_memory(error: Exception) -> bool:
  """Whether an XLA runtime error is a failed allocation (a batch too large for the device)."""
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


def balanced_labels(num_samples: int, num_classes: int) -> np.ndarray:
  """Sorted class labels, as even as possible over classes (all null when unconditional)."""
  if num_classes == 0:
    return np.zeros(num_samples, np.int32)
  return np.sort(np.arange(num_samples) % num_classes).astype(np.int32)


def parse_labels(spec: str, num_samples: int, num_classes: int) -> np.ndarray:
  """'' -> balanced over classes; '3' -> all class 3; '0,1,2' -> cycled to num_samples."""
  if not spec:
    return balanced_labels(num_samples, num_classes)
  try:
    values = np.array([int(v) for v in spec.split(",")], np.int32)
  except ValueError as e:
    raise ValueError(f"--labels must be comma-separated integers, got {spec!r}.") from e
  if values.min() < 0 or values.max() > num_classes:
    raise ValueError(f"--labels must lie in [0, {num_classes}) ({num_classes} = unconditional), got {spec!r}.")
  return np.resize(values, num_samples)


class Generator:
  """prior + tokenizer -> (tokens, images) for batches of labels; one compiled program per batch size.

  Runs on the prior's mesh (the tokenizer joins it, replicated): each batch of labels is split over the batch-axis
  devices and processes, and the results are gathered on every host, so it works on one device or a pod."""

  def __init__(self, prior, tokenizer, code_shape: tuple, sampler_kwargs: dict,
               batch_setting: str = "--config.sampling.batch_size"):
    """`batch_setting`: the flag that sets the batch size, named when a batch does not fit in memory."""
    self.code_shape, self.batch_setting = tuple(code_shape), batch_setting
    self.codebook_size = prior.network.vocab.codebook_size
    graph_p, self.state_p = nnx.split(prior)
    graph_t, self.state_t = nnx.split(tokenizer)
    sharding = jax.tree.leaves(self.state_p)[0].sharding
    self.mesh = (sharding.mesh if isinstance(sharding, jax.sharding.NamedSharding)
                 else sharding_lib.make_mesh(devices=list(sharding.device_set)[:1]))
    self.state_t = jax.device_put(self.state_t, sharding_lib.replicated(self.mesh))

    def run(state_p, state_t, rng, labels, codes):
      known = {} if codes is None else {"codes": codes.reshape(labels.shape[0], -1)}
      tokens = nnx.merge(graph_p, state_p).sample(rng, labels, **sampler_kwargs, **known)
      tokens = tokens.reshape((labels.shape[0],) + self.code_shape)
      return tokens, jnp.clip(nnx.merge(graph_t, state_t).decode(tokens), 0.0, 1.0)

    self._run = jax.jit(run)
    self.forward_passes = prior.forward_passes(**sampler_kwargs)
    self.compile_seconds = 0.0
    self._compiled = {}

  def _program(self, batch: dict, rng: jax.Array):
    """The compiled sampling program for the batch's size (and editing or not), compiled apart from the timed
    sampling, once per key."""
    key = (batch["label"].shape[0], "codes" in batch)
    if key not in self._compiled:
      start = time.perf_counter()
      self._compiled[key] = self._run.lower(self.state_p, self.state_t, rng, batch["label"],
                                            batch.get("codes")).compile()
      self.compile_seconds = time.perf_counter() - start
    return self._compiled[key]

  def __call__(self, labels: np.ndarray, rng: jax.Array, batch_size: int, codes: np.ndarray | None = None) -> dict:
    """Samples for every label, in batches (the last padded; the size rounded down to whole rows per device).
    `codes` [n, *code_shape] edits: known codes, the prior's mask id (the codebook size) where unknown; they come
    back unchanged (priors/base.py's convention). Returns tokens, images, labels, timing."""
    n = len(labels)
    multiple = sharding_lib.batch_multiple(self.mesh)
    batch_size = max(multiple, batch_size // multiple * multiple)
    pad = lambda a: np.concatenate([a, np.repeat(a[-1:], -n % batch_size, 0)])
    local = {"label": pad(labels)}
    if codes is not None:
      local["codes"] = pad(check_codes(codes, self.codebook_size, (n,) + self.code_shape))
    rows = sharding_lib.process_rows(batch_size, self.mesh)
    batches = [sharding_lib.global_batch({k: v[i:i + batch_size][rows] for k, v in local.items()}, self.mesh)
               for i in range(0, n + (-n % batch_size), batch_size)]
    try:
      compiled = self._program(batches[0], rng)
      tokens, images = [], []
      start = time.perf_counter()
      for i, batch in enumerate(batches):
        t, x = compiled(self.state_p, self.state_t, jax.random.fold_in(rng, i * batch_size), batch["label"],
                        batch.get("codes"))
        tokens.append(sharding_lib.to_host(t))
        images.append(sharding_lib.to_host(x))
    except jax.errors.JaxRuntimeError as e:
      if not out_of_memory(e):
        raise
      raise SamplingOutOfMemory(
          f"Sampling ran out of device memory at batch size {batch_size} ({str(e).strip().splitlines()[0][:160]}): "
          f"lower {self.batch_setting} (e.g. {self.batch_setting}={max(1, batch_size // 2)}) and run the command "
          "again.") from e
    seconds = time.perf_counter() - start
    return {"tokens": np.concatenate(tokens)[:n], "images": np.concatenate(images)[:n].astype(np.float32),
            "labels": labels.astype(np.int32), "seconds": seconds, "ms_per_image": 1000 * seconds / n,
            "forward_passes": self.forward_passes, "compile_seconds": self.compile_seconds}


def save_samples(directory: str, samples: dict, num_classes: int, per_row: int = 10, name: str = "samples"):
  """Writes <name>.npz (tokens, images, labels) and <name>.png (one row per class, `per_row` images each)."""
  os.makedirs(directory, exist_ok=True)
  tmp = os.path.join(directory, name + ".tmp.npz")  # written whole, then renamed: never half a file
  np.savez_compressed(tmp, tokens=samples["tokens"], images=samples["images"], labels=samples["labels"])
  os.replace(tmp, os.path.join(directory, name + ".npz"))
  images, labels = samples["images"], samples["labels"]
  classes = range(num_classes) if num_classes else [0]
  rows = [images[labels == c][:per_row] for c in classes]
  rows = [np.concatenate([r, np.ones((per_row - len(r),) + images.shape[1:], np.float32)]) for r in rows]
  grid = images_lib.make_grid(np.concatenate(rows), rows=len(rows))
  images_lib.save_png(os.path.join(directory, name + ".png"), grid, scale=3)
  return grid
