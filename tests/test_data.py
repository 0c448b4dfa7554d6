"""Data: determinism, exact resumption, labels kept with their images, IDX parsing, TFDS path, clear errors."""

import gzip

import jax
import numpy as np
import pytest

from vqgen.data import FashionMNIST, SyntheticImages, TFDSSource, eval_batches, make_source, train_dataset
from vqgen.data.fashion_mnist import read_idx
from vqgen.stages.image_data import ImageStage
from vqgen.train import sharding as sharding_lib


@pytest.fixture(scope="module")
def train_source():
  return FashionMNIST("train")


def take(iterator, n):
  return [next(iterator) for _ in range(n)]


def test_fashion_mnist_files(train_source):
  test = FashionMNIST("test")
  assert len(train_source) == 60000 and len(test) == 10000
  assert train_source.images.shape == (60000, 28, 28, 1) and train_source.images.dtype == np.uint8
  assert sorted(np.unique(train_source.labels)) == list(range(10))
  assert np.bincount(test.labels).tolist() == [1000] * 10


def test_same_seed_same_batches(train_source):
  a = take(iter(train_dataset(train_source, batch_size=32, seed=3, image_size=28)), 5)
  b = take(iter(train_dataset(train_source, batch_size=32, seed=3, image_size=28)), 5)
  c = take(iter(train_dataset(train_source, batch_size=32, seed=4, image_size=28)), 5)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert not np.array_equal(a[0]["label"], c[0]["label"])
  assert a[0]["image"].dtype == np.float32 and 0.0 <= a[0]["image"].min() and a[0]["image"].max() <= 1.0


def test_resumed_iterator_continues_exactly(train_source):
  ds = train_dataset(train_source, batch_size=16, seed=0, image_size=28)
  reference = take(iter(ds), 8)
  it = iter(ds)
  take(it, 3)
  state = it.get_state()
  resumed = iter(train_dataset(train_source, batch_size=16, seed=0, image_size=28))
  resumed.set_state(state)
  for x, y in zip(take(resumed, 5), reference[3:]):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])


def test_epochs_reshuffle_and_cover_the_split():
  source = FashionMNIST("test")
  ds = train_dataset(source, batch_size=1000, seed=0, image_size=28)
  it = iter(ds)
  epoch1 = np.concatenate([next(it)["label"] for _ in range(10)])
  epoch2 = np.concatenate([next(it)["label"] for _ in range(10)])
  assert np.bincount(epoch1).tolist() == [1000] * 10  # every record exactly once per epoch
  assert not np.array_equal(epoch1, epoch2)


def test_labels_match_images(train_source):
  lookup = {train_source.images[i].tobytes(): train_source.labels[i] for i in range(len(train_source))}
  batch = next(iter(train_dataset(train_source, batch_size=64, seed=1, image_size=28)))
  for image, label in zip(batch["image"], batch["label"]):
    assert lookup[np.round(image * 255).astype(np.uint8).tobytes()] == label


def test_process_shards_are_disjoint(train_source):
  a = next(iter(train_dataset(train_source, batch_size=64, seed=0, image_size=28, process_index=0,
                              process_count=2)))
  b = next(iter(train_dataset(train_source, batch_size=64, seed=0, image_size=28, process_index=1,
                              process_count=2)))
  rows = lambda x: {im.tobytes() for im in x["image"]}
  assert not rows(a) & rows(b)


def test_eval_batches_pad_and_mask():
  source = FashionMNIST("test")
  batches = list(eval_batches(source, batch_size=300, image_size=28, limit=1000))
  assert len(batches) == 4 and all(b["image"].shape == (300, 28, 28, 1) for b in batches)
  assert sum(int(b["mask"].sum()) for b in batches) == 1000
  np.testing.assert_array_equal(np.concatenate([b["label"][b["mask"]] for b in batches]), source.labels[:1000])


def _write_idx(path, array):
  header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_and_errors(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
  _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
  _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
  source = FashionMNIST("test", data_dir=str(tmp_path))
  np.testing.assert_array_equal(source.images[..., 0], images)
  assert source[3]["label"] == 3
  with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
    f.write(bytes([0, 0, 8, 1]) + (9).to_bytes(4, "big") + b"\x00" * 5)
  with pytest.raises(ValueError, match="truncated or corrupt"):
    read_idx(tmp_path / "t10k-labels-idx1-ubyte.gz")
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    FashionMNIST("test", data_dir=str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
    FashionMNIST("train", data_dir=str(tmp_path))
  with pytest.raises(ValueError, match="split"):
    FashionMNIST("validation")


def test_tfds_source_with_mock_data():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=40):
    source = make_source("mnist", "train")
    assert isinstance(source, TFDSSource) and len(source) == 40
    record = source[0]
    assert record["image"].shape == (28, 28, 1) and record["image"].dtype == np.uint8
    batch = next(iter(train_dataset(source, batch_size=8, seed=0, image_size=16)))
    assert batch["image"].shape == (8, 16, 16, 1) and batch["label"].shape == (8,)


def test_tfds_missing_dataset_error(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(FileNotFoundError, match="tfds build"):
    TFDSSource("mnist", "train", data_dir=str(tmp_path))


def test_synthetic_images_are_deterministic_smooth_and_of_the_asked_shape():
  train = SyntheticImages("train", image_size=64, channels=3)
  a, b = train[3], SyntheticImages("train", image_size=64, channels=3)[3]
  assert a["image"].shape == (64, 64, 3) and a["image"].dtype == np.uint8 and a["label"] == 3
  np.testing.assert_array_equal(a["image"], b["image"])  # the same record every time it is read
  assert not np.array_equal(a["image"], SyntheticImages("validation", image_size=64, channels=3)[3]["image"])
  assert (len(train), len(SyntheticImages("validation", image_size=64, channels=3))) == (10_000, 1_000)
  x = a["image"].astype(np.float32)
  neighbour = np.mean(np.abs(np.diff(x, axis=1)))  # smooth: neighbours differ far less than random pixels do
  assert x.std() > 20 and neighbour < 0.2 * np.mean(np.abs(x - np.roll(x, 32, axis=0)))
  with pytest.raises(IndexError):
    train[10_000]
  with pytest.raises(ValueError, match="image_size and channels"):
    make_source("synthetic", "train")
  assert make_source("synthetic", "test", image_size=8, channels=1)[0]["image"].shape == (8, 8, 1)


def test_random_flip_mirrors_training_images_deterministically_and_resumes_exactly():
  source = SyntheticImages("train", image_size=8, channels=3)
  kwargs = dict(batch_size=16, seed=0, image_size=8)
  plain = take(iter(train_dataset(source, **kwargs)), 4)
  flipped = take(iter(train_dataset(source, **kwargs, random_flip=True)), 4)
  mirrored = []
  for a, b in zip(plain, flipped):
    np.testing.assert_array_equal(a["label"], b["label"])  # the same records in the same order
    same = np.all(a["image"] == b["image"], axis=(1, 2, 3))
    mirror = np.all(a["image"][:, :, ::-1] == b["image"], axis=(1, 2, 3))
    assert np.all(same | mirror) and not np.any(same & mirror)  # each image as it is or mirrored left-right
    mirrored.append(mirror)
  assert 0.3 < np.mean(mirrored) < 0.7
  for a, b in zip(flipped, take(iter(train_dataset(source, **kwargs, random_flip=True)), 4)):
    np.testing.assert_array_equal(a["image"], b["image"])  # deterministic for a seed
  it = iter(train_dataset(source, **kwargs, random_flip=True))
  take(it, 2)
  resumed = iter(train_dataset(source, **kwargs, random_flip=True))
  resumed.set_state(it.get_state())
  for a, b in zip(take(resumed, 2), flipped[2:]):
    np.testing.assert_array_equal(a["image"], b["image"])


def test_random_flip_is_a_training_option_of_the_stage_only(tiny):
  """config.data.random_flip flips the tokenizer's training stream, never its eval split."""
  common = {"data.name": "synthetic", "data.image_size": 8, "data.channels": 3}
  assert tiny(**common).data.random_flip is False
  plain, flipping = ImageStage(tiny(**common)), ImageStage(tiny(**common, **{"data.random_flip": True}))
  a, b = (next(iter(s.train_dataset(16, 0, 1)))["image"] for s in (plain, flipping))
  assert not np.array_equal(a, b)
  assert np.all(np.all(a == b, axis=(1, 2, 3)) | np.all(a[:, :, ::-1] == b, axis=(1, 2, 3)))
  mesh = sharding_lib.make_mesh(1, 1, 1, devices=jax.devices()[:1])
  for x, y in zip(plain.eval_batches(mesh), flipping.eval_batches(mesh)):
    np.testing.assert_array_equal(x["image"], y["image"])


@pytest.mark.parametrize("split, expected", [
    ("test[:512]", range(0, 512)), ("test[100:200]", range(100, 200)), ("test[-1000:]", range(9000, 10000)),
    ("test[:10%]", range(0, 1000)), ("test[25%:50%]", range(2500, 5000)), ("test[9990:]", range(9990, 10000))])
def test_split_slicing_as_tfds_selects_those_records(split, expected):
  """`name[start:stop]` (integers, negatives, percentages) on the local sources: TFDS's syntax, the same records."""
  whole, part = FashionMNIST("test"), make_source("fashion_mnist", split)
  assert len(part) == len(expected)
  for i in (0, len(expected) // 2, len(expected) - 1):
    np.testing.assert_array_equal(part[i]["image"], whole[expected[i]]["image"])
    assert part[i]["label"] == whole[expected[i]]["label"]
  synthetic = make_source("synthetic", "train[10:20]", image_size=8, channels=3)
  np.testing.assert_array_equal(synthetic[3]["image"], SyntheticImages("train", image_size=8, channels=3)[13]["image"])
  with pytest.raises(IndexError):
    part[len(expected)]


def test_bad_split_slices_say_the_syntax():
  for split in ("test[:5", "test[a:b]", "test[1:2:3]"):
    with pytest.raises(ValueError, match="NAME\\[START:STOP\\]"):
      make_source("fashion_mnist", split)
  with pytest.raises(ValueError, match="selects no record"):
    make_source("fashion_mnist", "test[20000:]")
  with pytest.raises(ValueError, match="split must be one of"):
    make_source("fashion_mnist", "validation[:10]")
