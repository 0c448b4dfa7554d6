"""Every config in configs/ trains a few steps with tiny overrides, end to end through vqgen.main.run."""

import glob
import json
import os

import pytest

from test_config import CONFIG_FILES, ROOT, load
from vqgen.main import run

TINY = ["--config.model.channels=8", "--config.model.num_res_blocks=1", "--config.model.norm_groups=4",
        "--config.data.batch_size=16", "--config.data.eval_batch_size=32", "--config.data.eval_limit=64",
        "--config.train.steps=2", "--config.train.log_every=1", "--config.train.checkpoint_every=2",
        "--config.optimizer.warmup_steps=1"]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_smoke(path, tmp_path):
  config = load(path, *TINY)
  results = run(config, str(tmp_path))
  assert results["num_eval_images"] == 64 and results["step"] == 2
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert {"test_psnr", "codebook_usage", "codebook_perplexity"} <= set(metrics)
  assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 2
  assert (tmp_path / "reconstructions.png").exists()
  assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
  assert os.path.isdir(tmp_path / "checkpoints" / "2")
