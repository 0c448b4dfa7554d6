"""Data: Grain pipelines over the local Fashion-MNIST files or named TFDS datasets."""

from vqgen.data.fashion_mnist import CLASS_NAMES, FashionMNIST
from vqgen.data.pipeline import eval_batches, make_source, resize_image, train_dataset
from vqgen.data.tfds_source import TFDSSource

__all__ = ["CLASS_NAMES", "FashionMNIST", "TFDSSource", "eval_batches", "make_source", "resize_image",
           "train_dataset"]
