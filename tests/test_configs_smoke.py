"""Every tokenizer config in configs/ trains a few steps with tiny overrides, end to end through vqgen.stages.run
(prior configs and the classifier: tests/test_prior_stage.py)."""

import glob
import json
import os

import pytest

from conftest import TINY_FLAGS
from test_config import CONFIG_FILES, ROOT, load
from vqgen.stages import run

TINY = [*TINY_FLAGS, "--config.train.steps=2", "--config.train.checkpoint_every=2"]


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if "/tokenizer/" in p or p.endswith("demo.py")],
                         ids=lambda p: os.path.relpath(p, ROOT))
def test_config_smoke(path, tmp_path, perceptual_workdir):
  flags = list(TINY)
  if load(path).loss.perceptual_weight > 0:  # the session's small perceptual network, not the user's cache
    flags.append(f"--config.loss.perceptual_weights={perceptual_workdir}")
  if load(path).model.name == "vit":
    flags += ["--config.model.vit_width=32", "--config.model.vit_depth=1"]
  if load(path).loss.adversarial_weight > 0:  # step 1 without the discriminator, step 2 with it
    flags += ["--config.loss.discriminator_start=1", "--config.discriminator.channels=8"]
  config = load(path, *flags)
  results = run(config, str(tmp_path))
  assert results["num_eval_images"] == 64 and results["step"] == 2
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert {"test_psnr", "codebook_usage", "codebook_perplexity"} <= set(metrics)
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 2
  assert (tmp_path / "reconstructions.png").exists()
  assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  assert os.path.isdir(tmp_path / "checkpoints" / "2")
