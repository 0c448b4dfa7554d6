"""PyTorch weight files (.pth / .pt) read into numpy arrays without PyTorch.

Both of torch.save's formats:
  zip (PyTorch >= 1.6)  `<root>/data.pkl` (the pickled object) and one `<root>/data/<key>` record of raw bytes per
                        storage (little-endian unless `<root>/byteorder` says otherwise);
  legacy (< 1.6; torchvision's VGG16 weights)  five pickles in a row: magic number, protocol version, system info,
                        the object, the list of storage keys; then per key an int64 element count and the bytes.
A tensor in the pickle is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storage is a
persistent id ('storage', <dtype>Storage, key, location, numel[, view]). The unpickler accepts only those
globals and OrderedDict, so a file can never run code; anything else is refused by name.
"""

import collections
import pickle
import struct
import zipfile

import ml_dtypes
import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
  def __init__(self, name: str):
    self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
  """A storage's bytes, filled in when the file's layout gives them (legacy files store them after the pickle)."""

  def __init__(self, dtype, numel: int):
    self.dtype, self.numel, self.data = dtype, numel, None

  def array(self) -> np.ndarray:
    return np.frombuffer(self.data, self.dtype, count=self.numel)


class _Tensor:
  """torch._utils._rebuild_tensor(_v2)'s arguments: a strided view of a storage, made into an array once the
  storage's bytes are known (legacy files store them after the pickle)."""

  def __init__(self, storage, offset, size, stride, *_unused):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def array(self) -> np.ndarray:
    flat = self.storage.array()
    if not self.size:
      return flat[self.offset].copy()
    if self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride)) >= len(flat):
      raise ValueError(f"a tensor of size {self.size} runs past its storage of {len(flat)} elements")
    view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.size,
                                           tuple(st * flat.dtype.itemsize for st in self.stride))
    return np.array(view)


class _View:
  """A legacy view storage (a slice of a root storage), resolved once the root's bytes are read."""

  def __init__(self, root: _Storage, offset: int, numel: int):
    self.root, self.offset, self.numel = root, offset, numel

  def array(self) -> np.ndarray:
    return self.root.array()[self.offset:self.offset + self.numel]


class _Unpickler(pickle.Unpickler):
  ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
             ("torch._utils", "_rebuild_tensor"): _Tensor,
             ("torch._utils", "_rebuild_tensor_v2"): _Tensor,
             ("torch._utils", "_rebuild_parameter"): lambda tensor, *_: tensor}

  def __init__(self, file, path: str, storage_of):
    super().__init__(file)
    self.path, self.storage_of = path, storage_of

  def find_class(self, module, name):
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(name)
    if (module, name) in self.ALLOWED:
      return self.ALLOWED[module, name]
    raise pickle.UnpicklingError(f"{self.path}: holds a {module}.{name}, which is not a tensor or a dict of "
                                 "tensors; vqgen reads weight files (state dicts) only.")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"{self.path}: unknown persistent id {pid!r}.")
    return self.storage_of(*pid[1:])


def _flatten(obj, prefix: str = "") -> dict:
  """{dotted name: array} from nested dicts of arrays (e.g. {'state_dict': {...}} -> 'state_dict.<name>')."""
  if isinstance(obj, _Tensor):
    return {prefix: obj.array()}
  if isinstance(obj, dict):
    out = {}
    for k, v in obj.items():
      out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
  return {}  # numbers, strings and other metadata of a checkpoint are not weights


def _load_zip(path: str) -> dict:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkl = [n for n in names if n.endswith("data.pkl")]
    if not pkl:
      raise ValueError(f"{path}: a zip file without data.pkl is not a PyTorch weight file.")
    root = pkl[0][:-len("data.pkl")]
    byteorder = z.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"

    def storage_of(storage_type, key, _location, numel, *_):
      s = _Storage(storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">"), numel)
      s.data = z.read(f"{root}data/{key}")
      return s

    with z.open(pkl[0]) as f:
      obj = _Unpickler(f, path, storage_of).load()
  return obj


def _load_legacy(path: str) -> dict:
  storages: dict = {}

  def storage_of(storage_type, key, _location, numel, view=None):
    if key not in storages:
      storages[key] = _Storage(storage_type.dtype, numel)
    if view is not None:
      _view_key, offset, view_numel = view
      return _View(storages[key], offset, view_numel)
    return storages[key]

  with open(path, "rb") as f:
    plain = lambda: _Unpickler(f, path, storage_of).load()  # noqa: E731  (the headers, through the same guard)
    try:
      magic = plain()
    except pickle.UnpicklingError:
      raise
    except Exception as e:  # not a pickle at all
      raise ValueError(f"{path}: not a PyTorch file: neither a zip nor a legacy pickle "
                       f"({type(e).__name__}: {e}).") from e
    if magic != LEGACY_MAGIC:
      raise ValueError(f"{path}: not a PyTorch file (bad magic number {magic!r}).")
    plain()  # protocol version
    plain()  # system info (byte order, type sizes)
    obj = plain()
    for key in plain():
      s = storages[key]
      count = struct.unpack("<q", f.read(8))[0]
      s.data = f.read(count * s.dtype.itemsize)
      if len(s.data) != count * s.dtype.itemsize:
        raise ValueError(f"{path}: truncated (storage {key} has {len(s.data)} of {count * s.dtype.itemsize} bytes).")
  return obj


def load_pth(path: str) -> dict:
  """{name: numpy array} of a PyTorch weight file (a state dict, possibly nested: names joined with '.')."""
  try:
    obj = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    arrays = _flatten(obj)
  except (pickle.UnpicklingError, EOFError, KeyError, struct.error, ValueError) as e:
    if isinstance(e, ValueError) and str(e).startswith(path):
      raise
    raise ValueError(f"{path}: cannot be read as a PyTorch weight file ({type(e).__name__}: {e}).") from e
  if not arrays:
    raise ValueError(f"{path}: holds no tensors.")
  return arrays
