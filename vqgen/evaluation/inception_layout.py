"""The FID Inception-v3's layer table and PyTorch weight names, in numpy only: no JAX, no vqgen imports, so that a
torch-only script (tests/fixtures/make_inception_reference.py) can load this file by path.

The network is pytorch-fid 0.3.0's `InceptionV3(use_fid_inception=True)`: torchvision's Inception3 (Szegedy et al.
2016, "Rethinking the Inception Architecture for Computer Vision") with the Mixed blocks patched to compute what
the TensorFlow graph of 2015-12-05 computes, the graph FID (Heusel et al. 2017) and the Inception Score (Salimans
et al. 2016) are defined on:
  FIDInceptionA / C / E_1  the branch_pool's 3x3 average pool does not count the zero padding
                           (count_include_pad=False);
  FIDInceptionE_2          the branch_pool is a 3x3 max pool (stride 1, padding 1) instead of an average pool.
Every conv is torchvision's BasicConv2d: conv (no bias, explicit zero padding) -> BatchNorm (eps 0.001) -> ReLU.

A block is a tuple of branches whose outputs are concatenated along channels; a branch is a sequence of steps,
each a `Conv`, a pool (one of POOLS) or a tuple of Convs applied to the same input and concatenated (InceptionE's
1x3 / 3x1 pairs). The stem is one branch of top-level layers.
"""

from typing import NamedTuple

import numpy as np

AVG_POOL = "avg3x3_s1_p1"     # count_include_pad=False (the FID patch of InceptionA, C and E_1)
MAX_POOL_S1 = "max3x3_s1_p1"  # FIDInceptionE_2's branch_pool
MAX_POOL_S2 = "max3x3_s2"     # no padding, floor mode (the stem, InceptionB, InceptionD)
POOLS = (AVG_POOL, MAX_POOL_S1, MAX_POOL_S2)

BN_EPS = 1e-3
INPUT_SIZE = 299
FEATURE_DIM = 2048     # pool3
NUM_CLASSES = 1008     # the 2015 graph's softmax: 1000 ImageNet classes and 8 unused
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
DEFAULT_PATH = f"~/.cache/vqgen/inception/{WEIGHTS_FILE}"


class Conv(NamedTuple):
  name: str
  out: int
  kernel: tuple
  stride: int
  padding: tuple   # (rows, columns), zeros on both sides


def conv(name: str, out: int, kernel=1, stride: int = 1, padding=0) -> Conv:
  pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)  # noqa: E731
  return Conv(name, out, pair(kernel), stride, pair(padding))


def _inception_a(pool_features: int) -> tuple:
  return ((conv("branch1x1", 64),),
          (conv("branch5x5_1", 48), conv("branch5x5_2", 64, 5, padding=2)),
          (conv("branch3x3dbl_1", 64), conv("branch3x3dbl_2", 96, 3, padding=1),
           conv("branch3x3dbl_3", 96, 3, padding=1)),
          (AVG_POOL, conv("branch_pool", pool_features)))


def _inception_b() -> tuple:
  return ((conv("branch3x3", 384, 3, stride=2),),
          (conv("branch3x3dbl_1", 64), conv("branch3x3dbl_2", 96, 3, padding=1),
           conv("branch3x3dbl_3", 96, 3, stride=2)),
          (MAX_POOL_S2,))


def _inception_c(c7: int) -> tuple:
  row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
  return ((conv("branch1x1", 192),),
          (conv("branch7x7_1", c7), conv("branch7x7_2", c7, **row), conv("branch7x7_3", 192, **col)),
          (conv("branch7x7dbl_1", c7), conv("branch7x7dbl_2", c7, **col), conv("branch7x7dbl_3", c7, **row),
           conv("branch7x7dbl_4", c7, **col), conv("branch7x7dbl_5", 192, **row)),
          (AVG_POOL, conv("branch_pool", 192)))


def _inception_d() -> tuple:
  return ((conv("branch3x3_1", 192), conv("branch3x3_2", 320, 3, stride=2)),
          (conv("branch7x7x3_1", 192), conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3)),
           conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0)), conv("branch7x7x3_4", 192, 3, stride=2)),
          (MAX_POOL_S2,))


def _inception_e(pool: str) -> tuple:
  pair = lambda name: (conv(f"{name}a", 384, (1, 3), padding=(0, 1)),  # noqa: E731
                       conv(f"{name}b", 384, (3, 1), padding=(1, 0)))
  return ((conv("branch1x1", 320),),
          (conv("branch3x3_1", 384), pair("branch3x3_2")),
          (conv("branch3x3dbl_1", 448), conv("branch3x3dbl_2", 384, 3, padding=1), pair("branch3x3dbl_3")),
          (pool, conv("branch_pool", 192)))


STEM = (conv("Conv2d_1a_3x3", 32, 3, stride=2), conv("Conv2d_2a_3x3", 32, 3),
        conv("Conv2d_2b_3x3", 64, 3, padding=1), MAX_POOL_S2,
        conv("Conv2d_3b_1x1", 80), conv("Conv2d_4a_3x3", 192, 3), MAX_POOL_S2)
MIXED = (("Mixed_5b", _inception_a(32)), ("Mixed_5c", _inception_a(64)), ("Mixed_5d", _inception_a(64)),
         ("Mixed_6a", _inception_b()),
         ("Mixed_6b", _inception_c(128)), ("Mixed_6c", _inception_c(160)), ("Mixed_6d", _inception_c(160)),
         ("Mixed_6e", _inception_c(192)),
         ("Mixed_7a", _inception_d()), ("Mixed_7b", _inception_e(AVG_POOL)), ("Mixed_7c", _inception_e(MAX_POOL_S1)))
BLOCKS = (("", (STEM,)),) + MIXED   # (name prefix, branches); the stem's layers are top-level


def block_convs(branches: tuple, cin: int) -> tuple[list, int]:
  """([(Conv, its input channels)] of one block in table order, the block's output channels)."""
  convs, cout = [], 0
  for branch in branches:
    c = cin
    for step in branch:
      if isinstance(step, str):
        continue   # pools keep the channels
      group = (step,) if isinstance(step, Conv) else step
      convs.extend((layer, c) for layer in group)
      c = sum(layer.out for layer in group)
    cout += c
  return convs, cout


def state_shapes() -> dict:
  """{PyTorch state-dict name: shape} of every weight of the network, in table order (`num_batches_tracked`, an
  unused counter, is left out)."""
  shapes, cin = {}, 3
  for prefix, branches in BLOCKS:
    convs, cin = block_convs(branches, cin)
    for layer, c in convs:
      name = f"{prefix}.{layer.name}" if prefix else layer.name
      shapes[f"{name}.conv.weight"] = (layer.out, c) + layer.kernel
      for what in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{name}.bn.{what}"] = (layer.out,)
  assert cin == FEATURE_DIM, cin
  shapes["fc.weight"], shapes["fc.bias"] = (NUM_CLASSES, FEATURE_DIM), (NUM_CLASSES,)
  return shapes


def random_fid_inception_state(seed: int) -> dict:
  """A full state dict (float32 numpy arrays, PyTorch names and layouts) drawn from np.random.default_rng(seed)
  in `state_shapes()` order, scaled so that activations stay O(1) through the 94 layers: He-normal convs, BN weight
  1 + 0.1 N, bias 0.1 N, running mean 0.1 N, running var U(0.5, 1.5); fc weight N(0, 1/2048), bias 0.1 N.
  The test fixture and its reference (tests/fixtures/make_inception_reference.py) use it; no trained weights."""
  rng, state = np.random.default_rng(seed), {}
  for key, shape in state_shapes().items():
    if key.endswith("conv.weight"):
      a = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    elif key == "fc.weight":
      a = rng.normal(0.0, 1.0 / np.sqrt(FEATURE_DIM), shape)
    elif key.endswith("bn.weight"):
      a = 1.0 + 0.1 * rng.standard_normal(shape)
    elif key.endswith("running_var"):
      a = rng.uniform(0.5, 1.5, shape)
    else:   # bn.bias, running_mean, fc.bias
      a = 0.1 * rng.standard_normal(shape)
    state[key] = a.astype(np.float32)
  return state
