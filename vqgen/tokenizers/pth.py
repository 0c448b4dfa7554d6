"""Weight files read into numpy arrays without PyTorch: PyTorch's .pth / .pt (`load_pth`), and .npz (`load_weights`).

Both of torch.save's formats:
  zip (PyTorch >= 1.6)  `<root>/data.pkl` (the pickled object) and one `<root>/data/<key>` record of raw bytes per
                        storage (little-endian unless `<root>/byteorder` says otherwise);
  legacy (< 1.6; torchvision's VGG16 weights)  five pickles in a row: magic number, protocol version, system info,
                        the object, the list of storage keys; then per key an int64 element count and the bytes.
A tensor in the pickle is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` whose storage is a
persistent id ('storage', <dtype>Storage, key, location, numel[, view]). The unpickler accepts only those
globals and OrderedDict, so a file can never run code; anything else is refused by name.

Nothing in a file is trusted. Before any memory is touched: every size, stride and offset is a non-negative integer
and a tensor's last element lies inside its storage (each tensor is then copied out: no array returned views a
file's buffer); a storage's bytes are exactly its element count times its item size; a zip member is read whole
(its CRC-32 checked), only after its declared size is known to fit: stored members within the file's own bytes,
deflated ones within INFLATE_SLACK + INFLATE_RATIO x the file's size (torch.save never compresses: only a re-zipped
file or np.savez_compressed deflates); the arrays returned hold at most twice the storages' bytes plus COPY_SLACK
(overlapping strides or many views of one storage cannot multiply memory). A name in torch hub's convention,
`<name>-<first 8 hex digits of the SHA-256>.pth`, is verified. Every refusal is one WeightsFileError line naming
the file, the tensor or storage, and what is wrong.
"""

import collections
import hashlib
import io
import math
import os
import pickle
import re
import struct
import zipfile

import ml_dtypes
import numpy as np

from vqgen.errors import Refusal

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
INFLATE_SLACK = 64 << 20   # bytes deflated members may inflate to beyond INFLATE_RATIO x the file's size
INFLATE_RATIO = 16         # trained weights are noise: deflate shrinks them by ~10%, never 16x
COPY_SLACK = 256 << 20     # bytes of arrays a file may yield beyond twice its storages' bytes
MAX_INT = 1 << 62          # sizes, strides, offsets and element counts above this are refused, not computed with
MAX_ENTRIES = 1_000_000    # dict entries walked (a pickle can share one dict under many keys, nesting exponentially)
MAX_DEPTH = 100            # dicts nested in dicts
MAX_DIMS = 64              # a tensor's dimensions
HASH_NAME = re.compile(r"-([0-9a-f]{8})\.pth?$")   # torch hub: <name>-<SHA-256[:8]>.pth


class WeightsFileError(Refusal):
  """A weights file that cannot be used as it is; the message names the file, what is wrong and (from the
  loaders) the fix, in one line."""


def _refuse(path: str, what: str):
  raise WeightsFileError(" ".join(f"{path}: {what}".split()))


def _unreadable(path: str, e: OSError):
  _refuse(path, f"cannot be read ({type(e).__name__}: {e.strerror or e}).")


def _count(value) -> bool:
  """Whether `value` is an int in [0, MAX_INT) (bool is not a count)."""
  return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_INT


class _StorageType:
  def __init__(self, name: str):
    self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage:
  """One storage: `numel` elements of `dtype`; its bytes come from `read(nbytes)` on first use (zip files) or are
  set once the file's layout gives them (legacy files store them after the pickle)."""

  def __init__(self, key, dtype: np.dtype, numel: int, read=None):
    self.key, self.dtype, self.numel, self.read, self.data = key, dtype, numel, read, None

  @property
  def nbytes(self) -> int:
    return self.numel * self.dtype.itemsize

  def flat(self, path: str, where: str) -> np.ndarray:
    if self.data is None and self.read is not None:
      self.data = self.read(self.nbytes, f"{where} (storage {self.key})")
    if self.data is None:
      _refuse(path, f"{where}: its storage {self.key} is not in the file.")
    return np.frombuffer(self.data, self.dtype)   # len(data) == nbytes: checked where the bytes were read


class _View:
  """A legacy view storage: elements [offset, offset + numel) of a root storage."""

  def __init__(self, root: _Storage, offset: int, numel: int):
    self.root, self.offset, self.numel, self.key = root, offset, numel, f"{root.key}[{offset}:+{numel}]"

  def flat(self, path: str, where: str) -> np.ndarray:
    root = self.root.flat(path, where)
    if self.offset + self.numel > len(root):
      _refuse(path, f"{where}: its view storage {self.key} runs past its root storage of {len(root)} elements.")
    return root[self.offset:self.offset + self.numel]


class _Tensor:
  """torch._utils._rebuild_tensor(_v2)'s arguments (storage, offset, size, stride, ...), checked and copied into
  an array once the tensor's name is known (`array`)."""

  def __init__(self, *args):
    self.args, self.value = args, None

  def array(self, path: str, name: str, budget) -> np.ndarray:
    """The tensor's elements, copied out of its storage once every index is proven inside it."""
    if self.value is not None:
      return self.value
    where = f"tensor {name!r}"
    if len(self.args) < 4:
      _refuse(path, f"{where} is rebuilt from {len(self.args)} arguments, not (storage, offset, size, stride, ...).")
    storage, offset, size, stride = self.args[:4]
    if not isinstance(storage, (_Storage, _View)):
      _refuse(path, f"{where}: its storage is a {type(storage).__name__}, not a storage of the file.")
    if not _count(offset):
      _refuse(path, f"{where}: storage offset {offset!r} is not an integer in [0, 2^62).")
    for what, values in (("size", size), ("stride", stride)):
      if not (isinstance(values, (tuple, list)) and all(_count(v) for v in values)):
        _refuse(path, f"{where}: {what} {values!r} is not a tuple of integers in [0, 2^62) (a negative or huge "
                      "stride or size never comes from torch.save).")
    if len(size) != len(stride) or len(size) > MAX_DIMS:
      _refuse(path, f"{where}: size {tuple(size)[:8]} and stride {tuple(stride)[:8]} differ in length or have over "
                    f"{MAX_DIMS} dimensions.")
    numel = math.prod(size)
    if numel >= MAX_INT:
      _refuse(path, f"{where}: size {tuple(size)} holds {numel} elements.")
    flat = storage.flat(path, where)
    if numel == 0:
      self.value = np.zeros(size, flat.dtype)
      return self.value
    last = offset + sum((n - 1) * st for n, st in zip(size, stride))
    if last >= len(flat):
      _refuse(path, f"{where}: size {tuple(size)}, stride {tuple(stride)} and offset {offset} reach element {last} "
                    f"of a storage of {len(flat)} elements.")
    budget.charge(path, where, numel * flat.dtype.itemsize)
    window = flat[offset:last + 1]   # every index offset + sum(i_k * stride_k) lies in it (proven just above)
    view = np.lib.stride_tricks.as_strided(window, tuple(size), tuple(st * flat.dtype.itemsize for st in stride),
                                           writeable=False)
    self.value = np.array(view)   # a copy: the strided view never leaves this line
    return self.value


class _Budget:
  """Bytes of arrays a file may yield: twice the bytes of the storages read so far, plus COPY_SLACK."""

  def __init__(self):
    self.storages = self.used = 0

  def charge(self, path: str, where: str, nbytes: int):
    self.used += nbytes
    if self.used > 2 * self.storages + COPY_SLACK:
      _refuse(path, f"{where}: its copy would bring the arrays read to {self.used} bytes, more than twice the "
                    f"file's {self.storages} bytes of storages (+{COPY_SLACK}): overlapping strides or one storage "
                    "viewed by very many tensors.")


def _parameter(*args):
  """torch._utils._rebuild_parameter(tensor, requires_grad, hooks): the tensor itself."""
  return args[0] if args else None


class _Unpickler(pickle.Unpickler):
  ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
             ("torch._utils", "_rebuild_tensor"): _Tensor,
             ("torch._utils", "_rebuild_tensor_v2"): _Tensor,
             ("torch._utils", "_rebuild_parameter"): _parameter}

  def __init__(self, file, path: str, storage_of):
    super().__init__(file)
    self.path, self.storage_of = path, storage_of

  def find_class(self, module, name):
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(name)
    if (module, name) in self.ALLOWED:
      return self.ALLOWED[module, name]
    _refuse(self.path, f"holds a {module}.{name}, which is not a tensor or a dict of tensors; vqgen reads weight "
                       "files (state dicts) only.")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
      _refuse(self.path, f"unknown persistent id {str(pid)[:100]}.")
    storage_type, key, _location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType) or not isinstance(key, (str, int)) or not _count(numel):
      _refuse(self.path, f"storage {str(key)[:40]}: malformed persistent id {str(pid)[:100]}.")
    return self.storage_of(storage_type.dtype, key, numel, *pid[5:])


def _shared(storages: dict, path: str, key, dtype, numel, make):
  """The storage of `key`, made on first use; a key seen again must come with the same dtype and element count."""
  if key not in storages:
    storages[key] = make()
  s = storages[key]
  if (s.dtype, s.numel) != (dtype, numel):
    _refuse(path, f"storage {key} is declared twice: {s.numel} x {s.dtype} and {numel} x {dtype}.")
  return s


class _Walk:
  """{dotted name: array} of the tensors in nested dicts (e.g. {'state_dict': {...}} -> 'state_dict.<name>');
  numbers, strings and other metadata of a checkpoint are not weights."""

  def __init__(self, path: str, budget: _Budget):
    self.path, self.budget, self.entries, self.open = path, budget, 0, set()

  def arrays(self, obj, prefix: str = "") -> dict:
    self.entries += 1
    if self.entries > MAX_ENTRIES:
      _refuse(self.path, f"holds more than {MAX_ENTRIES} dict entries (dicts shared under many keys).")
    if isinstance(obj, _Tensor):
      return {prefix: obj.array(self.path, prefix, self.budget)}
    if not isinstance(obj, dict):
      return {}
    if id(obj) in self.open or len(self.open) >= MAX_DEPTH:
      _refuse(self.path, f"entry {prefix!r}: dicts nest in themselves or more than {MAX_DEPTH} deep.")
    self.open.add(id(obj))
    out = {}
    for k, v in obj.items():
      out.update(self.arrays(v, f"{prefix}.{k}" if prefix else str(k)))
    self.open.discard(id(obj))
    return out


class _Members:
  """A zip archive's members, each read whole with its CRC-32 checked, after its declared size is checked: a stored
  member within the bytes the file has, a deflated one within the file's inflation allowance (module docstring)."""

  def __init__(self, path: str, archive: zipfile.ZipFile):
    self.path, self.archive, self.disk = path, archive, os.path.getsize(path)
    self.packed = self.inflated = 0

  def read(self, name: str, nbytes: int | None = None, what: str = "") -> bytes:
    what = f"{what}: " if what else ""
    try:
      info = self.archive.getinfo(name)
    except KeyError:
      _refuse(self.path, f"{what}the archive has no member {name!r}.")
    if nbytes is not None and info.file_size != nbytes:
      _refuse(self.path, f"{what}member {name!r} holds {info.file_size} bytes; its pickle declares {nbytes}.")
    if info.flag_bits & 0x1:
      _refuse(self.path, f"{what}member {name!r} is encrypted.")
    self.packed += info.compress_size
    if info.header_offset + info.compress_size > self.disk or self.packed > self.disk:
      _refuse(self.path, f"{what}member {name!r} claims bytes past the end of the {self.disk}-byte file "
                         "(truncated, or members overlapping).")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
      _refuse(self.path, f"{what}stored member {name!r} declares {info.file_size} bytes in {info.compress_size}.")
    if info.compress_type != zipfile.ZIP_STORED:
      self.inflated += info.file_size
      allowed = INFLATE_SLACK + INFLATE_RATIO * self.disk
      if self.inflated > allowed:
        _refuse(self.path, f"{what}member {name!r} inflates its {info.compress_size} bytes to {info.file_size}, "
                           f"past the {allowed} bytes a {self.disk}-byte file may inflate to (a zip bomb?).")
    try:
      with self.archive.open(info) as f:
        data = f.read(info.file_size + 1)   # zipfile stops at the declared size and checks the CRC-32 at the end
    except Exception as e:  # BadZipFile (a bad CRC-32), EOFError, zlib.error, ...  pylint: disable=broad-except
      _refuse(self.path, f"{what}member {name!r} is damaged ({type(e).__name__}: {e}).")
    if len(data) != info.file_size:
      _refuse(self.path, f"{what}member {name!r} yields {len(data)} of its {info.file_size} bytes (truncated).")
    return data


def _open_zip(path: str) -> zipfile.ZipFile:
  try:
    return zipfile.ZipFile(path)
  except OSError as e:
    _unreadable(path, e)
  except (zipfile.BadZipFile, ValueError, EOFError) as e:
    _refuse(path, f"a zip archive whose directory is unreadable: truncated or damaged ({type(e).__name__}: {e}).")


def _load_zip(path: str) -> dict:
  with _open_zip(path) as archive:
    members = _Members(path, archive)
    pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if not pkl:
      _refuse(path, "a zip file without data.pkl is not a PyTorch weight file.")
    root = pkl[0][:-len("data.pkl")]
    byteorder = "little"
    if root + "byteorder" in archive.namelist():
      byteorder = members.read(root + "byteorder").decode("ascii", "replace").strip()
    if byteorder not in ("little", "big"):
      _refuse(path, f"byteorder {byteorder[:20]!r} is neither 'little' nor 'big'.")
    storages, budget = {}, _Budget()

    def storage_of(dtype, key, numel, *_):
      dtype = dtype.newbyteorder("<" if byteorder == "little" else ">")

      def read(nbytes, what):
        data = members.read(f"{root}data/{key}", nbytes, what)
        budget.storages += nbytes
        return data

      return _shared(storages, path, key, dtype, numel, lambda: _Storage(key, dtype, numel, read))

    obj = _Unpickler(io.BytesIO(members.read(pkl[0])), path, storage_of).load()
    return _Walk(path, budget).arrays(obj)


def _load_legacy(path: str) -> dict:
  storages: dict = {}
  budget = _Budget()

  def storage_of(dtype, key, numel, view=None):
    s = _shared(storages, path, key, dtype, numel, lambda: _Storage(key, dtype, numel))
    if view is None:
      return s
    if not (isinstance(view, tuple) and len(view) == 3 and _count(view[1]) and _count(view[2])):
      _refuse(path, f"storage {key}: malformed view {str(view)[:100]}.")
    return _View(s, view[1], view[2])

  with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    plain = lambda: _Unpickler(f, path, storage_of).load()  # noqa: E731  (the headers, through the same guard)
    try:
      magic = plain()
    except WeightsFileError:
      raise
    except Exception as e:  # not a pickle at all  pylint: disable=broad-except
      _refuse(path, f"not a PyTorch file: neither a zip nor a legacy pickle ({type(e).__name__}: {e}).")
    if magic != LEGACY_MAGIC:
      _refuse(path, f"not a PyTorch file (bad magic number {str(magic)[:40]}).")
    plain()  # protocol version
    plain()  # system info (byte order, type sizes)
    obj = plain()
    keys = plain()
    if not isinstance(keys, list) or len(set(map(str, keys))) != len(keys):
      _refuse(path, "the list of storage keys after the pickle is not a list of distinct keys.")
    for key in keys:
      s = storages.get(key)
      if s is None:
        _refuse(path, f"storage {str(key)[:40]} is listed but no tensor declares it.")
      header = f.read(8)
      if len(header) < 8:
        _refuse(path, f"truncated (storage {key}'s element count is missing).")
      count = struct.unpack("<q", header)[0]
      if count != s.numel:
        _refuse(path, f"storage {key} holds {count} elements; its pickle declares {s.numel}.")
      if s.nbytes > size - f.tell():
        _refuse(path, f"truncated (storage {key} has {size - f.tell()} of its {s.nbytes} bytes).")
      s.data = f.read(s.nbytes)
      budget.storages += s.nbytes
  return _Walk(path, budget).arrays(obj)


def check_name_hash(path: str) -> None:
  """A file named in torch hub's convention (`<name>-<first 8 hex digits of its SHA-256>.pth`) must hash to it."""
  match = HASH_NAME.search(os.path.basename(path))
  if match is None:
    return
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  if not digest.hexdigest().startswith(match.group(1)):
    _refuse(path, f"its SHA-256 is {digest.hexdigest()}, but its name says it starts with {match.group(1)} (torch "
                  "hub's convention): the file is damaged or not the release it is named after (rename it if that "
                  "part of the name is no hash).")


def load_pth(path: str) -> dict:
  """{name: numpy array} of a PyTorch weight file (a state dict, possibly nested: names joined with '.');
  WeightsFileError (module docstring) for anything that is not one."""
  try:
    check_name_hash(path)
    with open(path, "rb") as f:
      is_zip = f.read(4) == b"PK\x03\x04"
    arrays = _load_zip(path) if is_zip else _load_legacy(path)
  except WeightsFileError:
    raise
  except OSError as e:
    _unreadable(path, e)
  except Exception as e:  # untrusted bytes: pickle and zipfile raise many types  pylint: disable=broad-except
    _refuse(path, f"is truncated, damaged or not a PyTorch weight file ({type(e).__name__}: {e}).")
  if not arrays:
    _refuse(path, "holds no tensors.")
  return arrays


def _load_npz(path: str) -> dict:
  """{name: array} of an .npz (np.savez or savez_compressed), each member read as `_Members` reads it."""
  arrays = {}
  try:
    with _open_zip(path) as archive:
      members = _Members(path, archive)
      for name in archive.namelist():
        if not name.endswith(".npy"):
          continue
        data = members.read(name, what=f"array {name[:-4]!r}")
        buffer = io.BytesIO(data)
        try:
          arrays[name[:-4]] = np.lib.format.read_array(buffer, allow_pickle=False)
        except Exception as e:  # pylint: disable=broad-except
          _refuse(path, f"array {name[:-4]!r} is not a readable .npy ({type(e).__name__}: {e}).")
        if buffer.tell() != len(data):
          _refuse(path, f"array {name[:-4]!r}: {len(data) - buffer.tell()} bytes follow its data (a damaged header).")
  except WeightsFileError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    _refuse(path, f"is truncated, damaged or not an .npz ({type(e).__name__}: {e}).")
  if not arrays:
    _refuse(path, "holds no arrays.")
  return arrays


def load_weights(path: str, fix: str = "") -> dict:
  """{name: array} of a weights file: an .npz, or a PyTorch .pth / .pt (`load_pth`). A file that cannot be used
  raises WeightsFileError: the file, what is wrong, then `fix` (the loader's advice)."""
  try:
    return _load_npz(path) if path.endswith(".npz") else load_pth(path)
  except WeightsFileError as e:
    if not fix:
      raise
    raise WeightsFileError(f"{e} {fix}") from e


def weight_array(arrays: dict, key: str, shape: tuple, path: str, expected: str, fix: str) -> np.ndarray:
  """arrays[key] as float32 of exactly `shape` (the PyTorch layout); else WeightsFileError naming the file, the
  array and what is wrong (`expected`: what such a file holds; `fix`: how to get a good one)."""
  if key not in arrays:
    raise WeightsFileError(f"{path}: no array {key!r} (expected shape {shape}); {expected}. {fix}")
  if np.shape(arrays[key]) != shape:
    raise WeightsFileError(f"{path}: {key} has shape {np.shape(arrays[key])}, expected {shape} (the PyTorch "
                           f"layout). {fix}")
  try:
    return np.asarray(arrays[key], np.float32)
  except (TypeError, ValueError):
    raise WeightsFileError(f"{path}: {key} holds {arrays[key].dtype}, not numbers. {fix}") from None
