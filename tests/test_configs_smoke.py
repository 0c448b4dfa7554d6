"""Every tokenizer config in configs/ trains a few steps with tiny overrides, end to end through vqgen.stages.run
on the 8 simulated devices (prior configs and the classifier: tests/test_prior_stage.py, tests/test_cifar10.py).
The ImageNet-256 and CIFAR-10 recipes run on synthetic images of their shape (256x256x3, 32x32x3) at tiny width
on a mesh with a 4-way fsdp axis, restore on meshes of other shapes, and train without their perceptual term: VGG16 at 256 px alone costs minutes on a 2-core CPU. The stage's LPIPS-VGG16
path on RGB images is tested at 32 px
(tests/test_vqgan.py::test_lpips_vgg16_perceptual_term_of_the_stage_on_rgb_images)."""

import glob
import json
import os

import pytest

from conftest import FSDP_FLAGS, TINY_FLAGS, assert_restores_on_other_meshes
from test_config import CONFIG_FILES, ROOT, load
from vqgen.stages import TokenizerStage, run

TINY = [*TINY_FLAGS, "--config.train.steps=2", "--config.train.checkpoint_every=2"]


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if "/tokenizer/" in p or p.endswith("demo.py")],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_config_smoke(path, tmp_path, perceptual_workdir, lpips_npz):
  flags, default = list(TINY), load(path)
  synthetic = default.data.name not in ("fashion_mnist", "synthetic")  # ImageNet, CIFAR-10: not on this machine
  if synthetic:  # a paper-scale recipe: also trained with a 4-way fsdp axis, restored on other meshes
    path += ":data=synthetic"
    flags += ["--config.loss.perceptual_weight=0", *FSDP_FLAGS]
  if default.data.image_size == 256:  # one image per device
    flags += ["--config.data.batch_size=8", "--config.data.eval_batch_size=8", "--config.data.eval_limit=16",
              "--config.discriminator.stylegan_channels=(8, 8, 8, 8, 8, 8, 8)", "--config.model.vit_heads=4"]
  elif default.loss.perceptual_weight > 0 and not synthetic:  # the session's network or weights, not the user's
    flags.append("--config.loss.perceptual_weights="
                 + (lpips_npz if default.loss.perceptual_network == "lpips_vgg16" else perceptual_workdir))
  if default.model.name == "vit":
    flags += ["--config.model.vit_width=32", "--config.model.vit_depth=1"]
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
  if synthetic:
    assert_restores_on_other_meshes(tmp_path, TokenizerStage)
