"""Write VQGAN-LC's frozen codebook: k-means centres of a network's patch features over Fashion-MNIST's training set
(vqgen/stages/feature_codebook.py).

  python -m vqgen.cli.feature_codebook --out=runs/vqgan_lc/feature_codebook.npy --codebook_size=16384
  python -m vqgen.cli.feature_codebook --network=runs/my_perceptual ...    a perceptual network trained elsewhere

The network is vqgen's perceptual network (FashionPerceptual), read from --network or the cache (trained there on
first use, ~2 min on 2 CPU cores). On 2 CPU cores the 2.94M patch features take ~25 s; each k-means iteration
costs 2 x num_features x codebook_size x 64 FLOPs (64 centres of 20k features, 5 iterations: 1 s).
"""

import os
import time

import numpy as np
from absl import flags

from vqgen import data as data_lib
from vqgen.cli import console
from vqgen.stages.classifier import perceptual_network
from vqgen.stages.feature_codebook import fit_feature_codebook, write_feature_codebook

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "The .npy file to write [codebook_size, feature_dim].")
flags.DEFINE_integer("codebook_size", 16384, "Number of centres (the tokenizer's quantizer.codebook_size).")
flags.DEFINE_string("network", None, "Workdir of the perceptual network (default: the cache).")
flags.DEFINE_string("data_dir", "", "Folder of the Fashion-MNIST IDX files (default: the Debian package's).")
flags.DEFINE_integer("num_features", 300_000, "Patch features drawn at random for k-means (0: all 2.94M).")
flags.DEFINE_integer("iters", 20, "Lloyd iterations.")
flags.DEFINE_integer("seed", 0, "Seed of the feature draw and of the k-means seeding.")
flags.mark_flag_as_required("out")


def main():
  console.log_to_file(os.path.dirname(os.path.abspath(FLAGS.out)))
  network = perceptual_network(FLAGS.network, FLAGS.data_dir)
  images = data_lib.FashionMNIST("train", FLAGS.data_dir or None).images
  start = time.perf_counter()
  centres, counts, extracted = fit_feature_codebook(network, images, FLAGS.codebook_size,
                                                    num_features=FLAGS.num_features, iters=FLAGS.iters,
                                                    seed=FLAGS.seed)
  write_feature_codebook(FLAGS.out, centres)
  used = min(FLAGS.num_features or extracted, extracted)
  print(f"{FLAGS.codebook_size} centres of {used:,} of the {extracted:,} patch features of {len(images):,} images, "
        f"{FLAGS.iters} iterations ({time.perf_counter() - start:.0f} s): {np.mean(counts > 0):.1%} non-empty, "
        f"largest cluster {counts.max():.0f}; written to {FLAGS.out}", flush=True)


def cli():
  console.start(main)


if __name__ == "__main__":
  cli()
