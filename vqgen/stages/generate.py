"""Sampling a prior and decoding with its tokenizer, in fixed-size jitted batches; sample files and grids.

`samples.npz` holds `tokens` int32 [N, h, w(, levels)], `images` float32 [N, H, W, C] in [0, 1] and `labels`
int32 [N] (the null class C for unconditional samples). The PNG grid has one row per class.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen import images as images_lib
from vqgen.train import sharding as sharding_lib


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

  def __init__(self, prior, tokenizer, code_shape: tuple, sampler_kwargs: dict):
    self.code_shape = tuple(code_shape)
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
      codes = np.asarray(codes, np.int32)
      if len(codes) != n or codes.size != n * np.prod(self.code_shape, dtype=int):
        raise ValueError(f"codes must be [{n}, {', '.join(map(str, self.code_shape))}] for {n} labels, got "
                         f"{list(codes.shape)}.")
      local["codes"] = pad(codes.reshape((n,) + self.code_shape))
    rows = sharding_lib.process_rows(batch_size, self.mesh)
    batches = [sharding_lib.global_batch({k: v[i:i + batch_size][rows] for k, v in local.items()}, self.mesh)
               for i in range(0, n + (-n % batch_size), batch_size)]
    key = (batch_size, codes is not None)
    if key not in self._compiled:  # compiled apart from the timed sampling, once per batch size (and editing)
      start = time.perf_counter()
      self._compiled[key] = self._run.lower(self.state_p, self.state_t, rng, batches[0]["label"],
                                            batches[0].get("codes")).compile()
      self.compile_seconds = time.perf_counter() - start
    compiled = self._compiled[key]
    tokens, images = [], []
    start = time.perf_counter()
    for i, batch in enumerate(batches):
      t, x = compiled(self.state_p, self.state_t, jax.random.fold_in(rng, i * batch_size), batch["label"],
                      batch.get("codes"))
      tokens.append(sharding_lib.to_host(t))
      images.append(sharding_lib.to_host(x))
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
