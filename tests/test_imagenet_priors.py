"""The ImageNet-256 prior recipes (configs/prior/{maskgit,ar,diffusion}_imagenet.py) without ImageNet: each
smoke-trains at tiny width over codes of their real shape (16x16 codes of a 1024-code tokenizer: a tiny one of
synthetic 32x32x3 images with 2x2 patches) on the 8 simulated devices with a 4-way fsdp axis, samples, and its
checkpoint restores on meshes of other shapes."""

import os

import numpy as np
import pytest

from conftest import FSDP_FLAGS, SMALL_SPLITS, assert_restores_on_other_meshes, tiny_config
from test_config import CONFIG_FILES, load
from test_prior_stage import PRIOR_TINY
from vqgen import config as config_lib
from vqgen.stages import PriorStage, load_run, run

IMAGENET_PRIORS = [p for p in CONFIG_FILES if "/prior/" in p and p.endswith("_imagenet.py")]
LIKELIHOOD = {"maskgit": "none", "autoregressive": "exact", "diffusion": "bound"}


@pytest.fixture(scope="module")
def codes_1024_tokenizer(tmp_path_factory):
  """16x16 codes of 1024 FSQ levels (8, 8, 4, 4): the shape and vocabulary of MaskGIT's ImageNet VQGAN codes."""
  workdir = str(tmp_path_factory.mktemp("tokenizer_16x16"))
  run(tiny_config(**{"data.name": "synthetic", "data.image_size": 32, "data.channels": 3, "model.patch_size": 2,
                     "train.steps": 2, "quantizer": config_lib.quantizer_config("fsq", levels=(8, 8, 4, 4)),
                     **SMALL_SPLITS}),
      workdir)
  return workdir


def test_the_recipes_are_the_papers_networks():
  c = {os.path.basename(p): config_lib.load_config(p) for p in IMAGENET_PRIORS}
  assert sorted(x.prior.name for x in c.values()) == ["autoregressive", "diffusion", "maskgit"]
  n = lambda x: (x.network.width, x.network.depth, x.network.heads, x.network.norm, x.network.mlp,
                 x.network.positions)
  assert n(c["maskgit_imagenet.py"]) == (768, 24, 16, "layernorm", "gelu", "learned")   # MaskGIT
  assert n(c["ar_imagenet.py"]) == (768, 12, 12, "rmsnorm", "swiglu", "rope2d")        # LlamaGen-B
  assert n(c["diffusion_imagenet.py"]) == (768, 20, 12, "layernorm", "gelu", "learned")  # MD4 (ImageNet 64)
  assert all(x.prior.num_classes == 1000 and x.evaluation.metrics is False for x in c.values())
  assert [c[f].data.batch_size for f in sorted(c)] == [256, 512, 256]


@pytest.mark.parametrize("path", IMAGENET_PRIORS, ids=os.path.basename)
def test_imagenet_prior_smoke_trains_with_fsdp_and_restores_on_other_meshes(path, codes_1024_tokenizer, tmp_path):
  config = load(f"{path}:tokenizer={codes_1024_tokenizer}", *PRIOR_TINY, *FSDP_FLAGS,
                "--config.sampling.num_samples=10")  # one sampling batch of 256 sequential codes for AR
  results = run(config, str(tmp_path))
  assert results["step"] == 2 and np.isfinite(results["val_loss"]) and results["num_samples"] == 10
  assert results["likelihood"] == LIKELIHOOD[config.prior.name]
  if results["likelihood"] == "none":  # MaskGIT's loss is no likelihood: neither bits per token nor per dimension
    assert "val_masked_nll" in results and not {"val_bits_per_token", "val_bits_per_dim"} & set(results)
  else:
    assert np.isfinite(results["val_bits_per_dim"]) and results["val_bits_per_dim"] > 0
  with np.load(tmp_path / "samples.npz") as f:
    assert f["images"].shape == (10, 32, 32, 3) and f["tokens"].shape == (10, 16, 16)
    assert int(f["tokens"].max()) < 1024
  _, model, _ = load_run(str(tmp_path), PriorStage)
  block = model.network.transformer.blocks[0]
  assert (block.fc3 is not None) == (config.network.mlp == "swiglu")
  assert hasattr(model.network.transformer, "angles") == (config.network.positions == "rope2d")
  assert_restores_on_other_meshes(tmp_path, PriorStage)


def test_flip_codes_adds_the_codes_of_the_mirrored_images(codes_1024_tokenizer):
  """data.flip_codes (the ImageNet recipes'): the training set is the N codes of the split, then the N codes of the
  left-right mirrored images, each equal to encoding the mirrored image directly; cached beside the others."""

  import jax.numpy as jnp

  from vqgen.stages.image_data import data_source

  path = next(p for p in IMAGENET_PRIORS if p.endswith("ar_imagenet.py"))
  stage = PriorStage(load(f"{path}:tokenizer={codes_1024_tokenizer}", *PRIOR_TINY))
  split = stage.tokenizer_config.data.train_split
  plain = stage.codes(split)["codes"]
  n = len(plain)
  assert stage.config.data.flip_codes and len(stage.train_codes["codes"]) == 2 * n
  np.testing.assert_array_equal(stage.train_codes["codes"][:n], plain)
  np.testing.assert_array_equal(stage.train_codes["labels"][n:], stage.train_codes["labels"][:n])
  source = data_source(stage.tokenizer_config.data, split)
  for i in (0, 7, n - 1):
    mirrored = np.asarray(source[i]["image"], np.float32)[None, :, ::-1] / 255.0
    direct = np.asarray(stage.tokenizer.encode(jnp.asarray(mirrored)))[0]
    np.testing.assert_array_equal(stage.train_codes["codes"][n + i], direct)
  assert not np.array_equal(stage.train_codes["codes"][n:], plain)
  assert "-train_256-flipped-" in os.path.basename(stage.codes(split, flip=True)["path"])
