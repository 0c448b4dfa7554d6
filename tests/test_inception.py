"""The FID Inception (vqgen/evaluation/inception.py) against pytorch-fid 0.3.0's on the same random weights
(tests/fixtures/inception_reference.npz, written by tests/fixtures/make_inception_reference.py), its loader's
errors, and its resize against PyTorch's bilinear formula."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vqgen.evaluation.inception import load_fid_inception, resize_for_inception
from vqgen.evaluation.inception_layout import WEIGHTS_URL, random_fid_inception_state

REFERENCE = os.path.join(os.path.dirname(__file__), "fixtures", "inception_reference.npz")


@pytest.fixture(scope="module")
def reference():
  with np.load(REFERENCE) as f:
    return dict(f)


@pytest.fixture(scope="module")
def outputs(reference, tmp_path_factory):
  """The JAX network's outputs on the reference images, loaded from an .npz of the seed's weights (PyTorch names);
  each image group is resized on its own, so the network compiles once, for [N, 299, 299, 3]."""
  path = tmp_path_factory.mktemp("inception") / "fid_inception.npz"
  np.savez(path, **random_fid_inception_state(int(reference["seed"])))
  net = load_fid_inception(str(path))
  groups = sorted((k for k in reference if k.startswith("images_")), key=lambda k: int(k.split("_")[1]))
  x = jnp.concatenate([resize_for_inception(reference[k].astype(np.float32) / 255) for k in groups])
  out = nnx.jit(lambda net, x: net(x))(net, x)
  return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("key", ["pool3", "logits"])
def test_matches_pytorch_fid(outputs, reference, key):
  got, want = outputs[key], reference[key]
  assert got.shape == want.shape
  diff = float(np.abs(got - want).max())
  assert diff < 1e-4, f"{key}: max |JAX - pytorch-fid| = {diff:.3g} (|reference| max {np.abs(want).max():.3g})"


def torch_bilinear(x: np.ndarray, size: int) -> np.ndarray:
  """torch.nn.functional.interpolate(mode='bilinear', align_corners=False) of NHWC x, in float64: output i reads
  the source at max((i + 0.5) * in / out - 0.5, 0), between its floor and the next pixel (the last one repeated)."""
  def matrix(n):
    src = np.maximum((np.arange(size) + 0.5) * n / size - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    m = np.zeros((size, n))
    np.add.at(m, (np.arange(size), i0), 1.0 - (src - i0))
    np.add.at(m, (np.arange(size), i1), src - i0)
    return m
  rows = np.tensordot(matrix(x.shape[1]), x.astype(np.float64), axes=(1, 1))        # [out, B, W, C]
  return np.tensordot(matrix(x.shape[2]), rows, axes=(1, 2)).transpose(2, 1, 0, 3)  # [B, out, out, C]


def test_resize_is_torch_bilinear_formula():
  x = np.random.default_rng(0).uniform(0, 1, (2, 5, 7, 1)).astype(np.float32)
  got = np.asarray(resize_for_inception(x))
  assert got.shape == (2, 299, 299, 3)
  np.testing.assert_allclose(got, torch_bilinear(np.repeat(x, 3, axis=-1), 299), atol=1e-6)


def test_resize_matches_torch(reference):
  """Rows RESIZE_ROWS (edges and middle) of torch's own resize of the reference images (up- and downsampled)."""
  rows = [0, 1, 149, 297, 298]
  for k in sorted(k for k in reference if k.startswith("images_")):
    got = np.asarray(resize_for_inception(reference[k].astype(np.float32) / 255))[:, rows]
    want = reference[k.replace("images_", "resized_")]
    assert np.abs(got - want).max() < 1e-6, (k, reference[k].shape, float(np.abs(got - want).max()))


def test_loader_errors(tmp_path):
  missing = str(tmp_path / "nowhere.pth")
  with pytest.raises(FileNotFoundError, match="never downloads") as e:
    load_fid_inception(missing)
  assert WEIGHTS_URL in str(e.value) and missing in str(e.value) and "`path`" in str(e.value)

  state = random_fid_inception_state(0)
  first = {k: v for k, v in state.items() if k.startswith("Conv2d_1a_3x3.")}
  path = str(tmp_path / "partial.npz")
  np.savez(path, **first)
  with pytest.raises(ValueError, match=r"no array 'Conv2d_2a_3x3.conv.weight' \(expected shape \(32, 32, 3, 3\)\)"):
    load_fid_inception(path)
  np.savez(path, **first, **{"Conv2d_2a_3x3.conv.weight": np.zeros((32, 32, 3, 3, 1), np.float32)})
  with pytest.raises(ValueError, match=r"Conv2d_2a_3x3.conv.weight has shape \(32, 32, 3, 3, 1\), expected "
                                       r"\(32, 32, 3, 3\)"):
    load_fid_inception(path)
