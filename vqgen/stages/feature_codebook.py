"""VQGAN-LC's codebook (Zhu et al. 2024, "Scaling the Codebook Size of VQGAN to 100,000 with a Utilization Rate of
99%", arXiv 2406.11837, Sec. 3.2): the k-means centres of a frozen pretrained network's patch features over the
training set (there: CLIP ViT-L/14 on ImageNet, 100,000 centres), kept frozen while a linear projector maps them to
the tokenizer's latent space (quantizers/vq.py, feature_dim).

For Fashion-MNIST the network is vqgen's own perceptual network (FashionPerceptual, trained and cached like any
user's network, or read from a workdir): its last tap is a 7 x 7 x 64 map, one 64-d feature per 4 x 4 patch, the
grid of the tokenizers here.

  python -m vqgen.cli.feature_codebook --out=runs/vqgan_lc/feature_codebook.npy --codebook_size=16384

The file is an .npy array [codebook_size, feature_dim] float32. A tokenizer names it in model.feature_codebook;
it is read once, when a run starts fresh, and the codebook is then part of the checkpoint (a trained run no longer
needs the file).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vqgen.evaluation.classifier import batched_apply
from vqgen.quantizers.clustering import kmeans


def patch_features(network, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
  """The network's last feature map over uint8 or [0, 1] images [N, H, W, C], flattened to [N * h * w, F]."""
  graphdef, state = nnx.split(network)
  last_tap = jax.jit(lambda state, x: nnx.merge(graphdef, state).features(x)[-1])
  images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
  maps = batched_apply(lambda x: last_tap(state, x), images, batch_size)
  return maps.reshape(-1, maps.shape[-1])


def cluster_centres(features: np.ndarray, codebook_size: int, *, iters: int = 20, seed: int = 0,
                    seeding: str = "random") -> tuple[np.ndarray, np.ndarray]:
  """(centres [codebook_size, F], counts [codebook_size]) of Lloyd's k-means over `features` [N, F]."""
  if codebook_size > len(features):
    raise ValueError(f"{codebook_size} centres need at least as many features; got {len(features)}.")
  fit = jax.jit(lambda x, key: kmeans(x, codebook_size, iters, key, seeding=seeding))
  centres, counts = fit(jnp.asarray(features, jnp.float32), jax.random.key(seed))
  return np.asarray(centres, np.float32), np.asarray(counts)


def fit_feature_codebook(network, images: np.ndarray, codebook_size: int, *, num_features: int = 300_000,
                         iters: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
  """(centres, counts, features extracted): k-means over `num_features` patch features of `images` drawn at random
  (seeded; 0 or more than there are: all of them)."""
  features = patch_features(network, images)
  extracted = len(features)
  if num_features and num_features < extracted:
    features = features[np.random.default_rng(seed).choice(extracted, num_features, replace=False)]
  centres, counts = cluster_centres(features, codebook_size, iters=iters, seed=seed)
  return centres, counts, extracted


def write_feature_codebook(path: str, centres: np.ndarray) -> None:
  """Writes the centres as .npy (atomically: an interrupted write leaves no partial file)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npy"
  np.save(tmp, np.asarray(centres, np.float32))
  os.replace(tmp, path)


def read_feature_codebook(path: str) -> np.ndarray:
  """The [K, F] float32 array of a feature-codebook file, or a ValueError saying what is wrong with it."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"No feature codebook at {path}: write one with `python -m vqgen.cli.feature_codebook "
                            f"--out={path} --codebook_size=<quantizer.codebook_size>`.")
  try:
    centres = np.load(path, allow_pickle=False)
  except (ValueError, OSError, EOFError) as e:
    raise ValueError(f"{path} is not a readable .npy feature codebook ({e}); write it again.") from e
  if centres.ndim != 2 or not np.issubdtype(centres.dtype, np.floating):
    raise ValueError(f"{path} holds a {centres.dtype} array of shape {centres.shape}; a feature codebook is a "
                     "float array [codebook_size, feature_dim].")
  return centres.astype(np.float32)
