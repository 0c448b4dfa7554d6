"""Stage-2 codes: the codes of whole splits under a frozen stage-1 tokenizer, extracted once and cached.

Cache file: <cache dir>/codes/<split>[-flipped]-<key>.npz (the cache dir: $VQGEN_CACHE_DIR, default ~/.cache/vqgen;
never the tokenizer's workdir, which may be read-only or another person's) holding `codes` int32 [N, h, w(, levels)] and `labels`
int32 [N]. The key hashes the tokenizer's trained weights (every array of the restored model, so a retrained or
further-trained tokenizer never reuses stale codes) and the data (dataset name, split, image size, record count
and a sample of the raw records); `-flipped` files hold the codes of the left-right mirrored images (the priors'
flip augmentation, data.flip_codes). Files are written to a temporary name and renamed, so an interrupted
extraction never leaves a partial cache behind, and processes sharing the cache never see each other's half files.
The key is content, so every prior over the same tokenizer weights and data shares one file.
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

from vqgen import data as data_lib
from vqgen.stages.image_data import data_source
from vqgen.stages.workdir import cache_dir
from vqgen.train import writers


def weights_digest(model) -> str:
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


def cached_codes(split: str, tokenizer, config, flip: bool = False, weights: str | None = None) -> dict:
  """{'codes', 'labels', 'path'} of a split (its mirrored images with `flip`) under `tokenizer` (trained with
  `config`; `weights`: its weights_digest when the caller has it), from the cache when present. Each process reads its own cache (extracting when it has none), so the
  cache need not be on a shared file system."""
  d = config.data
  source = data_source(d, split)
  key = hashlib.sha256(((weights or weights_digest(tokenizer)) + _data_digest(config, split, source)).encode()).hexdigest()
  safe = re.sub(r"[^\w.%-]+", "_", split).strip("_")  # train[:512] -> train_512 (the key tells the slices apart)
  name = f"{safe}-flipped" if flip else safe
  path = os.path.join(cache_dir(), "codes", f"{d.name}-{name}-{key[:16]}.npz")
  if os.path.exists(path) and not _readable(path):
    logging.warning("Code cache %s is unreadable (corruption): extracting again.", path)
    os.remove(path)  # (a file of the cache's own, named by its content)
  if not os.path.exists(path):
    what = f"{split} codes{' of the mirrored images' if flip else ''}"
    writers.say(f"Extracting the {what} of {d.name} (once; cached in {os.path.dirname(path)}) ...")
    codes, labels = extract_codes(tokenizer, config, split, flip=flip)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, codes=codes, labels=labels)
    os.replace(tmp, path)
  with np.load(path) as f:
    return {"codes": f["codes"], "labels": f["labels"], "path": path}
