"""Configs: unknown keys and invalid values fail before any work, naming the key; every config file loads."""

import argparse
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from vqgen import config as config_lib
from vqgen.stages import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))


def load(path, *overrides):
  """Parses a config file and flag overrides exactly as vqgen.main does."""
  argv = [sys.argv[0], f"--config={path}", *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, ROOT))
def test_config_files_load_and_validate(path, lpips_npz):
  c = load(path)
  if c.stage == "tokenizer" and c.loss.perceptual_network == "lpips_vgg16":  # refused until given its weights
    with pytest.raises(ValueError, match="loss.perceptual_weights.*never downloads"):
      config_lib.validate(c)
    c = load(path, f"--config.loss.perceptual_weights={lpips_npz}")
  if c.stage == "prior":
    with pytest.raises(ValueError, match="tokenizer_workdir"):  # a prior must name its tokenizer
      config_lib.validate(c)
    c = load(path + ":tokenizer=runs/some_tokenizer")
  config_lib.validate(c)
  assert c.is_locked


def test_variant_and_override():
  path = os.path.join(ROOT, "configs/tokenizer/fsq_fashion_mnist.py")
  c = load(path + ":levels=8-6-5,steps=7", "--config.optimizer.learning_rate=0.01")
  assert tuple(c.quantizer.levels) == (8, 6, 5) and c.train.steps == 7 and c.optimizer.learning_rate == 0.01


def test_unknown_override_key_names_it():
  path = os.path.join(ROOT, "configs/tokenizer/fsq_fashion_mnist.py")
  with pytest.raises(Exception, match="stpes"):
    load(path, "--config.train.stpes=5")


def test_unknown_variant_key_names_it():
  with pytest.raises(Exception, match="levles=8-5.*allowed keys"):
    load(os.path.join(ROOT, "configs/tokenizer/fsq_fashion_mnist.py") + ":levles=8-5")


@pytest.mark.parametrize("key, value, message", [
    ("quantizer.name", "vq9", "quantizer.name='vq9'.*one of"),
    ("quantizer.levels", (8, 1), "quantizer=.*levels must all be >= 2"),
    ("loss.reconstruction", "l3", "loss.reconstruction"),
    ("data.batch_size", 0, "data.batch_size"),
    ("optimizer.warmup_steps", 10**9, "optimizer.warmup_steps"),
    ("model.norm_groups", 7, "model.norm_groups"),
    ("model.patch_size", 3, "data.image_size"),
    ("mesh.fsdp", 0, "mesh.fsdp"),
])
def test_invalid_value_names_key(key, value, message):
  c = config_lib.tokenizer_config()
  section, name = key.split(".")
  c[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c)


@pytest.mark.parametrize("key, value, message", [
    ("prior.name", "gpt", "prior.name='gpt'.*one of"),
    ("network.heads", 3, "network.heads=3.*divide network.width"),
    ("network.head", "softmax", "network.head"),
    ("prior.mask_schedule", "cosin", "prior.mask_schedule"),
    ("sampling.grid", "log", "sampling.grid"),
    ("sampling.top_p", 0.0, "sampling.top_p"),
    ("prior.class_dropout", 1.0, "prior.class_dropout"),
])
def test_invalid_prior_value_names_key(key, value, message):
  c = config_lib.prior_config()
  c.tokenizer_workdir = "runs/t"
  section, name = key.split(".")
  c[section][name] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c)


def test_guidance_needs_an_unconditional_model():
  c = config_lib.prior_config()
  c.tokenizer_workdir = "runs/t"
  c.prior.class_dropout, c.sampling.guidance_scale = 0.0, 2.0
  with pytest.raises(ValueError, match="class_dropout > 0"):
    config_lib.validate(c)


def test_cli_rejects_unknown_key_before_work(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "vqgen.main", "--config=configs/demo.py", f"--workdir={tmp_path}/w",
       "--config.train.nonexistent=1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode != 0 and "nonexistent" in result.stderr
  assert not os.path.exists(tmp_path / "w")


def test_codebook_scaling_grid_configs_are_valid():
  """Every cell of experiments/codebook_scaling.py's full grid builds a valid config."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import codebook_scaling  # pylint: disable=import-outside-toplevel
  for name in ("vq", "vq_rotation", "vq_ema_dead", "simvq", "fsq", "lfq", "bsq"):
    for bits in (6, 8, 10, 12, 14):
      c = config_lib.load_config(os.path.join(ROOT, "configs/demo.py"))
      c.quantizer = codebook_scaling.quantizer(name, bits)
      config_lib.validate(c)
      assert c.quantizer.name in ("vq", "fsq", "lfq", "bsq")


def test_curve_resume_keeps_only_points_of_the_same_prior_and_sampler(tmp_path):
  """experiments/*.py --resume (curves_lib.earlier_points, Sweep.drew): an earlier point is kept only when its prior,
  its sample count and every sampler setting but the swept ones match; files written before points carried their
  prior's workdir take it from their header. A resumed run's training minutes add up its segments."""
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import curves_lib  # pylint: disable=import-outside-toplevel
  sweep = object.__new__(curves_lib.Sweep)  # no trained prior needed: drew() reads only these three
  sweep.workdir, sweep.labels = "/runs/ar", np.zeros(10, np.int32)
  sweep.config = config_lib.load_config(config_lib.prior_config_path("autoregressive", "tokenizer=/runs/tokenizer"))
  point = dict(build.sampler_kwargs(sweep.settings()), workdir="/runs/ar", num_samples=10, seed=0)
  swept = ("guidance_scale", "guidance_schedule")
  assert sweep.drew(point, swept)
  assert sweep.drew(dict(point, guidance_scale=9.0, guidance_schedule="linear"), swept)
  assert not sweep.drew(dict(point, top_k=3), swept)
  assert sweep.drew(dict(point, top_k=3), swept, top_k=3)
  assert not sweep.drew(dict(point, num_samples=20), swept)
  assert not sweep.drew(dict(point, workdir="/runs/other"), swept)
  out = str(tmp_path / "curve")
  with open(out + ".json", "w") as f:
    json.dump({"prior": "/runs/ar", "points": [{k: v for k, v in point.items() if k != "workdir"}]}, f)
  kept = curves_lib.earlier_points(argparse.Namespace(resume=True), out, lambda data, p: data["prior"])
  assert kept == [point] and sweep.drew(kept[0], swept)
  assert curves_lib.earlier_points(argparse.Namespace(resume=False), out, lambda data, p: data["prior"]) == []
  with open(tmp_path / "metrics.jsonl", "w") as f:  # a run stopped at 90 s and resumed for 60 s more
    f.writelines(json.dumps(row) + "\n" for row in ({"step": 1, "uptime": 30.0}, {"step": 2, "loss": 1.0},
                                                     {"step": 3, "uptime": 90.0}, {"step": 4, "uptime": 20.0},
                                                     {"step": 5, "uptime": 60.0}, {"step": 6, "loss": 0.5}))
  assert curves_lib.training_minutes(str(tmp_path)) == pytest.approx(2.5)


def test_optional_quantizer_arguments_are_overridable():
  path = os.path.join(ROOT, "configs/tokenizer/lfq_fashion_mnist.py")
  assert load(path).quantizer.dim is None
  c = load(path, "--config.quantizer.dim=16", "--config.quantizer.entropy_mode=grouped")
  assert c.quantizer.dim == 16 and c.quantizer.entropy_mode == "grouped"
  config_lib.validate(c)


def test_demo_prior_choices_name_their_config_files():
  """`make demo PRIOR=...` / experiments/prior_comparison.py: each family maps to a config file of that family, on
  Fashion-MNIST's codes and on CIFAR-10's, and takes the shared variants (PRIOR_VARIANTS)."""
  for dataset in ("fashion_mnist", "cifar10"):
    for name in config_lib.PRIOR_CONFIGS:
      c = config_lib.load_config(config_lib.prior_config_path(name, "tokenizer=/tokenizer,steps=7,ema_decay=0.999",
                                                              dataset))
      assert (c.prior.name, c.tokenizer_workdir, c.train.steps, c.optimizer.ema_decay) == (name, "/tokenizer", 7, 0.999)
  with pytest.raises(ValueError, match="imagenet"):
    config_lib.prior_config_path("maskgit", dataset="imagenet")


def test_classifier_config_names_what_it_is_built_for():
  c = config_lib.classifier_config()
  config_lib.validate(c)
  c.data.image_size = 32
  with pytest.raises(ValueError, match="built for Fashion-MNIST"):
    config_lib.validate(c)
