"""Weight files that are crafted, truncated, damaged or misnamed (vqgen/tokenizers/pth.py and the Inception and LPIPS
loaders that read .pth and .npz files through it): refused with one line that names the file, the tensor or array,
the cause and, from the loaders, the fix; never a traceback, a crash, a bomb inflated or heap bytes returned as
weights. Each test's docstring is its promise.

The .pth files are written as torch.save writes them, by tests/test_pth.py's writer (no PyTorch needed).
"""

import hashlib
import io
import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import test_pth
from test_pth import Storage, Tensor, Writer, save_legacy, save_zip, torch_names  # noqa: F401  (a fixture)
from vqgen.errors import Refusal
from vqgen.evaluation.inception import load_fid_inception
from vqgen.evaluation.inception_layout import WEIGHTS_FILE, WEIGHTS_URL
from vqgen.tokenizers.perceptual_networks import load_lpips_vgg16
from vqgen.tokenizers.pth import WeightsFileError, load_pth, load_weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOMB_BYTES = 2100 << 20   # 2.2 GB inflated from about 2 MB
MAX_GROWTH_KB = 256 << 10


def refusal(call, *args) -> str:
  """The one-line message of the WeightsFileError `call(*args)` raises."""
  with pytest.raises(WeightsFileError) as e:
    call(*args)
  message = str(e.value)
  assert isinstance(e.value, Refusal) and "\n" not in message, message
  return message


def one_tensor(path, tensor: Tensor, save=save_zip) -> str:
  save(path, {"w": tensor})
  return str(path)


def flip_byte(path, index: int) -> None:
  data = bytearray(open(path, "rb").read())
  data[index] ^= 0x55
  open(path, "wb").write(bytes(data))


def truncate(path, fraction: float = 0.5) -> None:
  data = open(path, "rb").read()
  open(path, "wb").write(data[:int(len(data) * fraction)])


def load_in_child(path) -> str:
  """load_weights(path) in a fresh Python: its stdout ('REFUSED <message>' or 'LOADED', then the growth of its peak
  resident memory in kB during the call); a crash fails the test, not the test run."""
  code = ("import resource, sys\n"
          "from vqgen.tokenizers.pth import WeightsFileError, load_weights\n"
          "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
          "try:\n"
          "  load_weights(sys.argv[1])\n"
          "  print('LOADED')\n"
          "except WeightsFileError as e:\n"
          "  print('REFUSED', e)\n"
          "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n")
  result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-2000:]}"
  return result.stdout


LAYOUTS = {  # name: (storage elements, offset, size, stride, what the refusal says)
    "negative_stride": (4, 0, (4,), (-1,), r"stride \(-1,\) is not a tuple of integers in \[0, 2\^62\)"),
    "offset_past_storage": (16, 16, (1,), (1,), "reach element 16 of a storage of 16 elements"),
    "size_past_storage": (16, 0, (4, 5), (5, 1), "reach element 19 of a storage of 16 elements"),
    "strides_past_storage": (16, 2, (4, 4), (4, 2), "reach element 20 of a storage of 16 elements"),
    "negative_size": (16, 0, (-4,), (1,), r"size \(-4,\) is not a tuple of integers"),
    "overlapping_copy": (1, 0, (1 << 34,), (0,), "more than twice the file's 4 bytes of storages"),
}


@pytest.mark.parametrize("case", LAYOUTS)
def test_crafted_tensor_layout_is_refused(tmp_path, torch_names, case):
  """A tensor whose stride or size is negative, whose offset or last element lies outside its storage, or whose
  overlapping strides would copy far more bytes than the file holds is refused, naming the file and the tensor,
  before any element is read."""
  numel, offset, size, stride, expected = LAYOUTS[case]
  path = one_tensor(tmp_path / "w.pth", Tensor(Storage("0", np.arange(numel, dtype=np.float32)), offset, size, stride))
  message = refusal(load_pth, path)
  assert message.startswith(f"{path}: tensor 'w': ") and re.search(expected, message), message


def test_stride_minus_2_to_the_40_refused_without_a_crash(tmp_path, torch_names):
  """A stride of -2^40 (which once read far outside the heap and crashed the process) is refused in one line, and
  the reading process lives on (checked in a child process)."""
  path = one_tensor(tmp_path / "w.pth", Tensor(Storage("0", np.arange(8, dtype=np.float32)), 4, (2,), (-(1 << 40),)))
  out = load_in_child(path)
  assert out.startswith(f"REFUSED {path}: tensor 'w': stride (-1099511627776,)"), out


class ViewWriter(Writer):
  """Pickles every storage as a legacy view of its elements [2, 6)."""

  def persistent_id(self, obj):
    pid = super().persistent_id(obj)
    return pid if pid is None else pid[:5] + ((f"{obj.key}.view", 2, 4),)


def test_legacy_view_past_its_root_storage_is_refused(tmp_path, torch_names, monkeypatch):
  """A legacy-format view storage that reaches past its root storage is refused, naming the tensor."""
  monkeypatch.setattr(test_pth, "Writer", ViewWriter)   # save_legacy's writer
  path = one_tensor(tmp_path / "legacy.pth", Tensor(Storage("0", np.arange(4, dtype=np.float32)), 0, (4,), (1,)),
                    save_legacy)
  message = refusal(load_pth, path)
  assert "tensor 'w'" in message and "runs past its root storage of 4 elements" in message, message


def deflated_zeros(prefix: bytes, nbytes: int) -> tuple[bytes, int]:
  """(raw deflate stream, CRC-32) of `prefix` followed by `nbytes` zero bytes (a multiple of 1 MiB), made from one
  compressed MiB repeated: full-flushed deflate blocks are independent, so the stream is valid."""
  chunk = bytes(1 << 20)
  head, zeros = zlib.compressobj(9, zlib.DEFLATED, -15), zlib.compressobj(9, zlib.DEFLATED, -15)
  block = zeros.compress(chunk) + zeros.flush(zlib.Z_FULL_FLUSH)
  stream = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH) + block * (nbytes >> 20) + zeros.flush()
  crc = zlib.crc32(prefix)
  for _ in range(nbytes >> 20):
    crc = zlib.crc32(chunk, crc)
  return stream, crc


def write_zip(path, members: list) -> None:
  """A zip archive written field by field: members (name, bytes as stored, CRC-32, inflated size, method)."""
  out, central = io.BytesIO(), io.BytesIO()
  for name, data, crc, size, method in members:
    name = name.encode()
    central.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, len(data), size,
                              len(name), 0, 0, 0, 0, 0, out.tell()) + name)
    out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(name), 0))
    out.write(name + data)
  start = out.tell()
  out.write(central.getvalue() + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                                             len(central.getvalue()), start, 0))
  open(path, "wb").write(out.getvalue())


def stored(name: str, data: bytes) -> tuple:
  return name, data, zlib.crc32(data), len(data), 0


def write_bomb(path, kind: str) -> None:
  """A genuine zip bomb of about 2 MB: a .pth whose one float32 storage, or an .npz whose one array, inflates to
  2.2 GB of zeros, with the sizes and CRC-32 it declares all true."""
  numel = BOMB_BYTES // 4
  if kind == "pth":
    pickled = io.BytesIO()
    Writer(pickled, legacy=False).dump({"w": Tensor(Storage("0", np.broadcast_to(np.float32(0), (numel,))), 0,
                                                    (numel,), (1,))})
    stream, crc = deflated_zeros(b"", BOMB_BYTES)
    members = [stored("archive/data.pkl", pickled.getvalue()), stored("archive/byteorder", b"little"),
               ("archive/data/0", stream, crc, BOMB_BYTES, 8)]
  else:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (numel,)})
    stream, crc = deflated_zeros(header.getvalue(), BOMB_BYTES)
    members = [("w.npy", stream, crc, len(header.getvalue()) + BOMB_BYTES, 8)]
  write_zip(path, members)


@pytest.mark.parametrize("kind", ["pth", "npz"])
def test_zip_bomb_is_refused_with_bounded_memory(tmp_path, torch_names, kind):
  """A 2 MB file whose member inflates to 2.2 GB (every declared size and CRC true) is refused before inflating,
  naming the file and the member, and the reading process's peak memory grows by less than 256 MB."""
  path = tmp_path / f"bomb.{kind}"
  write_bomb(path, kind)
  assert os.path.getsize(path) < (3 << 20)
  out = load_in_child(path)
  assert out.startswith(f"REFUSED {path}: ") and "(a zip bomb?)" in out, out
  assert int(out.split()[-1]) < MAX_GROWTH_KB, out


@pytest.mark.parametrize("save", [save_zip, save_legacy], ids=["zip", "legacy"])
def test_truncated_pth_is_refused(tmp_path, torch_names, save):
  """A .pth cut in half (either of torch.save's formats) is refused in one line that says it is truncated."""
  path = one_tensor(tmp_path / "w.pth", Tensor(Storage("0", np.arange(256, dtype=np.float32)), 0, (256,), (1,)), save)
  truncate(path)
  assert "truncated" in refusal(load_pth, path)


@pytest.mark.parametrize("member", ["storage", "pickle"])
def test_flipped_byte_in_a_pth_member_fails_its_crc(tmp_path, torch_names, member):
  """One flipped byte in a zip-format .pth, in a tensor's storage or in the pickle, fails the member's CRC-32: refused
  in one line naming the member (and the tensor), never read as weights."""
  values = np.arange(1000, 1256, dtype=np.float32)
  path = one_tensor(tmp_path / "w.pth", Tensor(Storage("0", values), 0, (256,), (1,)))
  data = open(path, "rb").read()
  flip_byte(path, data.index(values.tobytes()) + 500 if member == "storage" else data.index(b"_rebuild_tensor_v2"))
  message = refusal(load_pth, path)
  assert "Bad CRC-32" in message, message
  if member == "storage":
    assert "tensor 'w' (storage 0): member 'archive/data/0' is damaged" in message, message
  else:
    assert "member 'archive/data.pkl' is damaged" in message, message


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_damaged_npz_is_refused(tmp_path, damage):
  """An .npz cut short or with one flipped byte in an array's data is refused in one line naming the file (and the
  array whose CRC-32 fails)."""
  path = str(tmp_path / "w.npz")
  np.savez(path, w=np.arange(1000, 1256, dtype=np.float32))
  if damage == "truncated":
    truncate(path, 0.8)
    assert "truncated or damaged" in refusal(load_weights, path)
  else:
    flip_byte(path, open(path, "rb").read().index(np.float32(1100).tobytes()))
    message = refusal(load_weights, path)
    assert "array 'w'" in message and "Bad CRC-32" in message, message


def test_hash_prefixed_name_is_verified(tmp_path, torch_names):
  """A .pth named in torch hub's convention (`<name>-<first 8 hex digits of its SHA-256>.pth`) loads when its bytes
  hash to that prefix and is refused, with both hashes, when they do not."""
  good = one_tensor(tmp_path / "w.pth", Tensor(Storage("0", np.arange(4, dtype=np.float32)), 0, (4,), (1,)))
  digest = hashlib.sha256(open(good, "rb").read()).hexdigest()
  named = tmp_path / f"weights-{digest[:8]}.pth"
  os.rename(good, named)
  np.testing.assert_array_equal(load_pth(str(named))["w"], np.arange(4, dtype=np.float32))
  wrong = "0" * 8 if not digest.startswith("0" * 8) else "1" * 8
  renamed = tmp_path / f"weights-{wrong}.pth"
  os.rename(named, renamed)
  message = refusal(load_pth, str(renamed))
  assert digest in message and f"starts with {wrong}" in message, message


def small_pth(path) -> str:
  return one_tensor(path, Tensor(Storage("0", np.arange(64, dtype=np.float32)), 0, (64,), (1,)))


@pytest.mark.parametrize("case", ["truncated_pth", "flipped_npz", "misnamed_release"])
def test_fid_inception_loader_gives_one_line_with_the_fix(tmp_path, torch_names, case):
  """load_fid_inception on a truncated .pth, an .npz with a flipped byte, or a file named as pytorch-fid's release
  whose SHA-256 does not match the name: one WeightsFileError line naming the file, the cause and the fix
  (download pytorch-fid's release file again; for an .npz, write it again from that file)."""
  if case == "truncated_pth":
    path = small_pth(tmp_path / "fid_inception.pth")
    truncate(path)
  elif case == "flipped_npz":
    path = str(tmp_path / "fid_inception.npz")
    np.savez(path, w=np.arange(1000, 1256, dtype=np.float32))
    flip_byte(path, open(path, "rb").read().index(np.float32(1100).tobytes()))
  else:
    path = small_pth(tmp_path / WEIGHTS_FILE)
  message = refusal(load_fid_inception, path)
  cause = {"truncated_pth": "truncated", "flipped_npz": "Bad CRC-32", "misnamed_release": "its SHA-256 is"}[case]
  fix = (f"write the .npz again from pytorch-fid's {WEIGHTS_FILE}" if case == "flipped_npz"
         else f"download pytorch-fid's {WEIGHTS_FILE} again")
  assert message.startswith(path) and cause in message, message
  assert message.endswith(f"Fix: {fix} ({WEIGHTS_URL})."), message


@pytest.mark.parametrize("case", ["truncated_pth", "flipped_npz", "misnamed_release"])
def test_lpips_loader_gives_one_line_with_the_fix(tmp_path, torch_names, case):
  """load_lpips_vgg16 (loss.perceptual_weights) with a truncated .pth among its comma-separated files, an .npz with a
  flipped byte, or a file named as torchvision's VGG16 release whose SHA-256 does not match the name: one
  WeightsFileError line naming that file, the cause and the fix."""
  if case == "truncated_pth":
    path = small_pth(tmp_path / "vgg.pth")
    truncate(path)
    paths = f"{small_pth(tmp_path / 'vgg16.pth')},{path}"
  elif case == "flipped_npz":
    path = paths = str(tmp_path / "vgg16_lpips.npz")
    np.savez(path, w=np.arange(1000, 1256, dtype=np.float32))
    flip_byte(path, open(path, "rb").read().index(np.float32(1100).tobytes()))
  else:
    path = paths = small_pth(tmp_path / "vgg16-397923af.pth")
  message = refusal(load_lpips_vgg16, paths)
  cause = {"truncated_pth": "truncated", "flipped_npz": "Bad CRC-32", "misnamed_release": "its SHA-256 is"}[case]
  assert message.startswith(path) and cause in message, message
  assert message.endswith("Fix: download torchvision's vgg16-397923af.pth and LPIPS v0.1's vgg.pth again, or write "
                          "the .npz of both again (docs/perceptual.md)."), message


def test_command_line_prints_the_refusal_alone(tmp_path, torch_names):
  """A command (vqgen.cli.console.start) whose weights file is damaged ends with exit status 2 and the refusal as its
  only line, 'Error: <file>: <cause> Fix: ...', no traceback."""
  path = small_pth(tmp_path / "fid_inception.pth")
  truncate(path)
  code = ("import os\n"
          "from vqgen.cli import console\n"
          "from vqgen.evaluation.inception import load_fid_inception\n"
          "console.start(lambda: load_fid_inception(os.environ['WEIGHTS']))\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WEIGHTS": path})
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 2 and len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith(f"Error: {path}: ") and "truncated" in lines[0] and "Fix: download" in lines[0], lines
