"""PyTorch weight files read without PyTorch (vqgen/tokenizers/pth.py), on files this test writes in both of
torch.save's layouts (zip and legacy), with views, strides and offsets as PyTorch stores them."""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import jax
import numpy as np
import pytest
from flax import nnx

from conftest import write_lpips_npz
from vqgen.tokenizers.perceptual_networks import load_lpips_vgg16
from vqgen.tokenizers.pth import LEGACY_MAGIC, load_pth

DTYPES = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage", np.dtype(np.float16): "HalfStorage"}


@pytest.fixture
def torch_names(monkeypatch):
  """Stand-ins for torch's storage classes and _rebuild_tensor_v2 under their real module names, so that pickle
  writes the same GLOBAL opcodes torch.save does."""
  torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
  for name in DTYPES.values():
    setattr(torch, name, type(name, (), {"__module__": "torch"}))

  def _rebuild_tensor_v2(*args):
    raise AssertionError("only pickled here")

  _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2, torch._utils = _rebuild_tensor_v2, utils
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return torch


class Storage:
  def __init__(self, key: str, flat: np.ndarray):
    self.key, self.flat = key, flat


class Tensor:
  """A tensor as torch pickles it: a view (offset, size, stride in elements) of a storage."""

  def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

  def __reduce__(self):
    rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
    return rebuild, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())


def as_tensors(arrays: dict) -> tuple[dict, dict]:
  """(state dict of Tensors, the arrays each should read back as). Besides plain contiguous tensors: a transposed
  view (strides not in C order) and two tensors sharing one storage at different offsets."""
  state, expected, storages = collections.OrderedDict(), {}, {}
  for i, (name, a) in enumerate(arrays.items()):
    a = np.ascontiguousarray(a)
    storages[name] = Storage(str(i), a.reshape(-1))
    strides = tuple(s // a.itemsize for s in a.strides)
    state[name], expected[name] = Tensor(storages[name], 0, a.shape, strides), a
  m = np.arange(12, dtype=np.float32).reshape(3, 4)
  shared = Storage("shared", np.concatenate([np.full(5, -1, np.float32), m.reshape(-1)]))
  state["transposed"], expected["transposed"] = Tensor(shared, 5, (4, 3), (1, 4)), m.T
  state["row"], expected["row"] = Tensor(shared, 9, (4,), (1,)), m[1]
  return state, expected


class Writer(pickle.Pickler):
  def __init__(self, file, legacy: bool):
    super().__init__(file, protocol=2)
    self.legacy, self.storages = legacy, {}

  def persistent_id(self, obj):
    if not isinstance(obj, Storage):
      return None
    self.storages[obj.key] = obj
    kind = getattr(sys.modules["torch"], DTYPES[obj.flat.dtype])
    return ("storage", kind, obj.key, "cpu", obj.flat.size) + ((None,) if self.legacy else ())


def save_zip(path, state):
  buffer = io.BytesIO()
  writer = Writer(buffer, legacy=False)
  writer.dump(state)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", buffer.getvalue())
    z.writestr("archive/byteorder", "little")
    for key, s in writer.storages.items():
      z.writestr(f"archive/data/{key}", s.flat.astype(s.flat.dtype.newbyteorder("<")).tobytes())
    z.writestr("archive/version", "3\n")


def save_legacy(path, state):
  with open(path, "wb") as f:
    for header in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
      pickle.dump(header, f, protocol=2)
    writer = Writer(f, legacy=True)
    writer.dump(state)
    pickle.dump(list(writer.storages), f, protocol=2)
    for s in writer.storages.values():
      f.write(struct.pack("<q", s.flat.size) + s.flat.tobytes())


@pytest.mark.parametrize("save", [save_zip, save_legacy], ids=["zip", "legacy"])
def test_pth_reads_back_every_tensor_exactly(tmp_path, torch_names, save):
  rng = np.random.default_rng(0)
  state, expected = as_tensors({"conv.weight": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
                                "conv.bias": rng.normal(size=(8,)).astype(np.float32),
                                "steps": np.array(7, np.int64), "half": rng.normal(size=(2, 5)).astype(np.float16)})
  save(tmp_path / "w.pth", {"state_dict": state, "epoch": 3})
  arrays = load_pth(str(tmp_path / "w.pth"))
  assert sorted(arrays) == sorted(f"state_dict.{k}" for k in expected)  # nested names joined; metadata dropped
  for name, a in expected.items():
    assert arrays[f"state_dict.{name}"].dtype == a.dtype
    np.testing.assert_array_equal(arrays[f"state_dict.{name}"], a)


def test_pth_refuses_code_and_garbage(tmp_path, torch_names):
  with open(tmp_path / "evil.pth", "wb") as f:
    pickle.dump(types.SimpleNamespace(a=1), f, protocol=2)
  with pytest.raises(ValueError, match="holds a types.SimpleNamespace"):  # refused, never constructed
    load_pth(str(tmp_path / "evil.pth"))
  with zipfile.ZipFile(tmp_path / "code.pth", "w") as z:  # a pickle calling os.system is refused by name
    z.writestr("archive/data.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
  with pytest.raises(ValueError, match="holds a os.system"):
    load_pth(str(tmp_path / "code.pth"))
  (tmp_path / "text.pth").write_text("not weights")
  with pytest.raises(ValueError, match="text.pth"):
    load_pth(str(tmp_path / "text.pth"))
  state, _ = as_tensors({"w": np.ones((4, 4), np.float32)})
  save_legacy(tmp_path / "cut.pth", state)
  data = (tmp_path / "cut.pth").read_bytes()
  (tmp_path / "cut.pth").write_bytes(data[:-10])
  with pytest.raises(ValueError, match="truncated"):
    load_pth(str(tmp_path / "cut.pth"))


def test_lpips_vgg16_from_the_two_public_pth_files(tmp_path, torch_names):
  """torchvision's VGG16 (legacy format, `features.<i>.*` among the classifier's arrays) plus LPIPS's vgg.pth
  (zip, `lin<l>.model.1.weight`), given comma-separated, load the same network as the .npz of both."""
  arrays = write_lpips_npz(tmp_path / "both.npz", np.random.default_rng(3), slices=False)
  vgg = {k: v for k, v in arrays.items() if k.startswith("features.")}
  vgg["classifier.0.weight"] = np.zeros((4, 4), np.float32)
  save_legacy(tmp_path / "vgg16.pth", as_tensors(vgg)[0])
  save_zip(tmp_path / "vgg.pth", as_tensors({k: v.astype(np.float32) for k, v in arrays.items()
                                             if k.startswith("lin")})[0])
  from_pth = nnx.state(load_lpips_vgg16(f"{tmp_path / 'vgg16.pth'},{tmp_path / 'vgg.pth'}"))
  from_npz = nnx.state(load_lpips_vgg16(str(tmp_path / "both.npz")))
  for a, b in zip(jax.tree.leaves(from_pth), jax.tree.leaves(from_npz), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
