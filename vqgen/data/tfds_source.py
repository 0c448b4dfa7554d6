"""Named TFDS datasets through `tfds.data_source` (random access over ArrayRecord files, no tf.data)."""

import numpy as np

from vqgen.errors import MissingInput


class TFDSSource:
  """Wraps `tfds.data_source(name, split)` into {'image': uint8 [H, W, C], 'label': int32} records.

  The dataset must already be prepared in `data_dir` (`tfds build NAME --file_format=array_record`, which needs
  TensorFlow and network once); vqgen never downloads at run time.
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None,
               image_key: str = "image", label_key: str = "label"):
    try:
      import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel  (imports TensorFlow)
    except ImportError as e:
      raise ImportError(f"Loading the TFDS dataset {name!r} needs tensorflow-datasets "
                        "(pip install -r requirements.txt).") from e
    try:
      self._source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)  # never downloads
    except Exception as e:  # TFDS raises several types for a missing or unprepared dataset.
      default = getattr(getattr(tfds.core, "constants", None), "DATA_DIR", "~/tensorflow_datasets")
      where = data_dir or f"{default} (TFDS's default; config.data.data_dir was empty)"
      target = data_dir or default
      raise MissingInput(
          f"TFDS dataset {name!r} split {split!r} is not prepared in data_dir={where} ({e}). vqgen never downloads: "
          f"prepare it once, on a machine with network, with `tfds build {name} --file_format=array_record "
          f"--data_dir={target}` (or python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', "
          f"data_dir='{target}').download_and_prepare(file_format='array_record')\") and copy that data_dir "
          "to this machine.") from e
    self.name, self.split = name, split
    self._image_key, self._label_key = image_key, label_key

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    record = self._source[index]
    image = np.asarray(record[self._image_key], np.uint8)
    if image.ndim == 2:
      image = image[..., None]
    label = np.int32(record[self._label_key]) if self._label_key in record else np.int32(-1)
    return {"image": image, "label": label}
