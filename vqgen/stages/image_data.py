"""The data side of the stages trained on images (config.data): the training stream and the ordered eval split."""

import jax

from vqgen import data as data_lib
from vqgen.train import sharding as sharding_lib


def data_source(data, split: str):
  """The source of `split` for a config.data section (Fashion-MNIST, synthetic images or a TFDS dataset)."""
  return data_lib.make_source(data.name, split, data.data_dir, image_size=data.image_size, channels=data.channels)


class ImageStage:
  """Base of TokenizerStage and ClassifierStage: config.data's split as per-process batches."""

  def __init__(self, config, workdir: str | None = None):
    self.config, self.workdir = config, workdir

  def train_dataset(self, batch_size: int, process_index: int, process_count: int):
    d = self.config.data
    source = data_source(d, d.train_split)
    # data.random_flip is a tokenizer key; the classifier flips inside its loss (model.flip).
    return data_lib.train_dataset(source, batch_size=batch_size, seed=self.config.seed, image_size=d.image_size,
                                  process_index=process_index, process_count=process_count,
                                  random_flip=d.get("random_flip", False))

  def check_data(self) -> None:
    d = self.config.data
    for split in (d.train_split, d.eval_split):
      data_source(d, split)

  def eval_batches(self, mesh):
    """One ordered pass over this process's rows of the eval split (padded batches with a `mask`)."""
    d = self.config.data
    source = data_source(d, d.eval_split)
    return data_lib.eval_batches(source, batch_size=sharding_lib.per_process_batch_size(d.eval_batch_size, mesh),
                                 image_size=d.image_size, process_index=jax.process_index(),
                                 process_count=jax.process_count(), limit=d.eval_limit or None)
