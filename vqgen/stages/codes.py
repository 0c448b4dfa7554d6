"""Stage-2 codes: the codes of whole splits under a frozen stage-1 tokenizer, extracted once and cached next to it.

Cache file: <tokenizer workdir>/codes/<split>[-flipped]-<key>.npz holding `codes` int32 [N, h, w(, levels)] and `labels`
int32 [N]. The key hashes the tokenizer's trained weights (every array of the restored model, so a retrained or
further-trained tokenizer never reuses stale codes) and the data (dataset name, split, image size, record count
and a sample of the raw records); `-flipped` files hold the codes of the left-right mirrored images (the priors'
flip augmentation, data.flip_codes). Files are written to a temporary name and renamed, so an interrupted
extraction never leaves a partial cache behind.
"""

import hashlib
import json
import logging
import os
import re
import zipfile

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from vqgen import data as data_lib
from vqgen.stages.image_data import data_source
from vqgen.train import writers


def _weights_digest(model) -> str:
  """SHA-256 of every array that decides the codes: the model's state but its random-number streams (a quantizer's
  k-means initialisation key and count, which encoding never uses)."""
  h = hashlib.sha256()
  state = nnx.state(model, nnx.Not(nnx.RngState)).to_pure_dict()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(state)[0],
                           key=lambda kv: jax.tree_util.keystr(kv[0])):
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
  return h.hexdigest()


def _data_digest(config, split: str, source) -> str:
  d = config.data
  h = hashlib.sha256(json.dumps([d.name, split, d.image_size, len(source)]).encode())
  for i in np.linspace(0, len(source) - 1, 16).astype(int):
    record = source[int(i)]
    h.update(np.asarray(record["image"]).tobytes())
    h.update(np.asarray(record["label"]).tobytes())
  return h.hexdigest()


def extract_codes(tokenizer, config, split: str, batch_size: int = 500, flip: bool = False) -> tuple:
  """(codes, labels) of every record of `split`, in order (on this process's first device); of the left-right
  mirrored images with `flip`."""
  d = config.data
  source = data_source(d, split)
  encode = jax.jit(lambda images: tokenizer.encode(images))
  codes, labels = [], []
  for batch in data_lib.eval_batches(source, batch_size=batch_size, image_size=d.image_size):
    keep = batch["mask"]
    images = batch["image"][:, :, ::-1] if flip else batch["image"]
    codes.append(np.asarray(encode(images))[keep])
    labels.append(batch["label"][keep])
  return np.concatenate(codes).astype(np.int32), np.concatenate(labels).astype(np.int32)


def _readable(path: str) -> bool:
  try:
    with np.load(path) as f:
      return f["codes"].shape[0] == f["labels"].shape[0]
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
    return False


def cached_codes(tokenizer_workdir: str, split: str, tokenizer, config, flip: bool = False) -> dict:
  """{'codes', 'labels'} of a split (its mirrored images with `flip`) under `tokenizer` (trained in
  `tokenizer_workdir` with `config`), from the cache when present.

  Process 0 extracts and writes; other processes wait for it and read the same file.
  """
  d = config.data
  source = data_source(d, split)
  key = hashlib.sha256((_weights_digest(tokenizer) + _data_digest(config, split, source)).encode()).hexdigest()
  safe = re.sub(r"[^\w.%-]+", "_", split).strip("_")  # train[:512] -> train_512 (the key tells the slices apart)
  name = f"{safe}-flipped" if flip else safe
  path = os.path.join(tokenizer_workdir, "codes", f"{name}-{key[:16]}.npz")
  if jax.process_index() == 0 and os.path.exists(path) and not _readable(path):
    logging.warning("Code cache %s is unreadable (interrupted write or corruption): extracting again.", path)
    os.remove(path)
  if jax.process_index() == 0 and not os.path.exists(path):
    what = f"{split} codes{' of the mirrored images' if flip else ''}"
    writers.say(f"Extracting the {what} of {d.name} with the tokenizer in {tokenizer_workdir} ...")
    codes, labels = extract_codes(tokenizer, config, split, flip=flip)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, codes=codes, labels=labels)
    os.replace(tmp, path)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"codes {name} {key[:16]}")
  with np.load(path) as f:
    return {"codes": f["codes"], "labels": f["labels"], "path": path}
