"""Data: Grain pipelines over the local Fashion-MNIST files, named TFDS datasets or synthetic images."""

from vqgen.data.fashion_mnist import CLASS_NAMES, FashionMNIST
from vqgen.data.pipeline import eval_batches, make_source, resize_image, train_dataset
from vqgen.data.synthetic import SyntheticImages
from vqgen.data.tfds_source import TFDSSource

__all__ = ["CLASS_NAMES", "FashionMNIST", "SyntheticImages", "TFDSSource", "eval_batches", "make_source", "resize_image",
           "train_dataset"]
