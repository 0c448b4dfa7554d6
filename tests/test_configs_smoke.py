"""Every tokenizer config in configs/ trains a few steps with tiny overrides, end to end through vqgen.stages.run
on the 8 simulated devices (prior configs and the classifier: tests/test_prior_stage.py, tests/test_cifar10.py).
The ImageNet-256 and CIFAR-10 recipes run on synthetic images on a mesh with a 4-way fsdp axis and train without
their perceptual term (VGG16 at 256 px alone costs minutes on a 2-core CPU; the stage's LPIPS-VGG16 path on RGB
images is tested at 32 px in tests/test_vqgan.py::test_lpips_vgg16_perceptual_term_of_the_stage_on_rgb_images).
The ViT-VQGAN recipe runs at its 256x256x3 (the ViT's patch grid is what the size changes); MaskGIT's convolutional
VQGAN, whose every layer is size-agnostic, at 64x64x3 on a data-parallel mesh (4x4 codes instead of 16x16: the
same layers at 1/16 of the compute; fsdp-sharded convolution kernels are CIFAR-10's conv VQGAN's, which compiles in
half the time). Checkpoints restore on meshes of other shapes: the ViT's and CIFAR-10's conv VQGAN (the layer types
of MaskGIT's). configs/demo.py is the default tokenizer config with its own step counts: the same program as
fsq_fashion_mnist.py's here, so it is compared, not trained."""

import glob
import json
import os

import numpy as np
import pytest

from conftest import FSDP_FLAGS, TINY_FLAGS, assert_restores_on_other_meshes
from test_config import CONFIG_FILES, ROOT, load
from vqgen.stages import TokenizerStage, run
from vqgen.stages.feature_codebook import write_feature_codebook

TINY = [*TINY_FLAGS, "--config.train.steps=2", "--config.train.checkpoint_every=2"]


# Synthetic-image recipes whose checkpoint is also restored on meshes of other shapes (see the docstring).
RESTORED = ("vit_vqgan_imagenet.py", "vqgan_cifar10.py")
SIZE_AGNOSTIC_256 = {"maskgit_vqgan_imagenet.py": 64}  # trained at this size instead of 256, without fsdp


def test_demo_config_is_the_default_tokenizer_config():
  demo, fsq = (load(os.path.join(ROOT, p)).to_dict() for p in ("configs/demo.py", "configs/tokenizer/fsq_fashion_mnist.py"))
  assert (demo["train"]["steps"], demo["train"]["checkpoint_every"]) == (1500, 500)
  for c in (demo, fsq):
    del c["train"]["steps"], c["train"]["log_every"], c["train"]["checkpoint_every"]
  assert demo == fsq


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if "/tokenizer/" in p], ids=lambda p: os.path.relpath(p, ROOT))
def test_config_smoke(path, tmp_path, perceptual_workdir, lpips_npz):
  flags, default, name = list(TINY), load(path), os.path.basename(path)
  synthetic = default.data.name not in ("fashion_mnist", "synthetic")  # ImageNet, CIFAR-10: not on this machine
  if synthetic:  # a paper-scale recipe: also trained with a 4-way fsdp axis
    path += ":data=synthetic"
    flags += ["--config.loss.perceptual_weight=0", *([] if name in SIZE_AGNOSTIC_256 else FSDP_FLAGS)]
  if default.data.image_size == 256:  # one image per device
    flags += ["--config.data.batch_size=8", "--config.data.eval_batch_size=8", "--config.data.eval_limit=16",
              "--config.discriminator.stylegan_channels=(8, 8, 8, 8, 8, 8, 8)", "--config.model.vit_heads=4"]
    if name in SIZE_AGNOSTIC_256:
      flags.append(f"--config.data.image_size={SIZE_AGNOSTIC_256[name]}")
  elif default.loss.perceptual_weight > 0 and not synthetic:  # the session's network or weights, not the user's
    flags.append("--config.loss.perceptual_weights="
                 + (lpips_npz if default.loss.perceptual_network == "lpips_vgg16" else perceptual_workdir))
  if default.model.name == "vit":
    flags += ["--config.model.vit_width=32", "--config.model.vit_depth=1"]
  if default.model.feature_codebook:  # VQGAN-LC: a codebook file of the right shape (real features: test_feature_codebook)
    features = np.random.default_rng(0).normal(size=(default.quantizer.codebook_size, default.quantizer.feature_dim))
    write_feature_codebook(str(tmp_path / "features.npy"), features)
    flags.append(f"--config.model.feature_codebook={tmp_path / 'features.npy'}")
  if default.loss.adversarial_weight > 0 and default.loss.discriminator_start > 0:  # step 2 with the discriminator
    flags += ["--config.loss.discriminator_start=1", "--config.discriminator.channels=8"]
  config = load(path, *flags)
  results = run(config, str(tmp_path))
  assert results["num_eval_images"] == config.data.eval_limit and results["step"] == 2
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert {"test_psnr", "codebook_usage", "codebook_perplexity"} <= set(metrics)
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 2
  assert (tmp_path / "reconstructions.png").exists()
  assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  assert os.path.isdir(tmp_path / "checkpoints" / "2")
  if name in RESTORED:
    assert_restores_on_other_meshes(tmp_path, TokenizerStage)
