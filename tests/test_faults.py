"""The fault catalogue: every bad input or broken file a run can meet, run through the real entry function or
command on a tiny config, asserting the message, the exit status and that nothing in the workdir was lost or
changed. docs/promises.md lists these tests as the project's promises (test_promises_page_lists_every_fault).

Each test's docstring is its promise.
"""

import glob
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from flax import nnx

from conftest import tiny_config
from test_config import load
from vqgen import config as config_lib
from vqgen.data import FashionMNIST
from vqgen.stages import TokenizerStage, load_run, run
from vqgen.train.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = {"train.steps": 6, "train.checkpoint_every": 2, "train.log_every": 1}
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def snapshot(folder) -> dict:
  """{relative path: SHA-256} of every file below `folder`."""
  out = {}
  for path, _, files in os.walk(folder):
    for name in files:
      with open(os.path.join(path, name), "rb") as f:
        out[os.path.relpath(os.path.join(path, name), folder)] = hashlib.sha256(f.read()).hexdigest()
  return out


def params(workdir):
  _, model, _ = load_run(str(workdir), TokenizerStage)
  return jax.tree.map(np.asarray, nnx.state(model).to_pure_dict())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 6-step tiny tokenizer run (checkpoints 2, 4, 6) and its final parameters."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  run(tiny_config(**STEPS), str(workdir))
  return workdir, params(workdir)


@pytest.fixture
def workdir(trained, tmp_path):
  """A copy of the finished run to break."""
  copy = tmp_path / "run"
  shutil.copytree(trained[0], copy)
  return copy


def cli(*args, cwd=ROOT):
  return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_unreadable_newest_checkpoint_is_set_aside_and_the_run_finishes(workdir, trained, capsys):
  """An unreadable newest checkpoint is moved to checkpoints_unusable/, the run resumes from the step before it,
  trains to the end again (to the same parameters), and a second rerun has nothing left to repair."""
  os.remove(workdir / "checkpoints" / "6" / "data" / "process_0-of-1.json")
  results = run(tiny_config(**STEPS), str(workdir))
  assert results["step"] == 6
  assert "Resumed from checkpoint step 4" in capsys.readouterr().out
  assert (workdir / "checkpoints_unusable" / "6").is_dir()
  assert Checkpointer(str(workdir / "checkpoints")).all_steps() == [2, 4, 6]
  jax.tree.map(np.testing.assert_array_equal, params(workdir), trained[1])
  run(tiny_config(**STEPS), str(workdir))
  assert "unusable" not in capsys.readouterr().out


def test_corrupt_checkpoint_bytes_are_detected_not_loaded(workdir, trained, capsys):
  """Flipped bytes in a checkpoint's tensor file fail its digest: that step is set aside, never loaded, and the
  run retrains from the previous step to the same parameters; metrics.jsonl then holds each step once."""
  state = workdir / "checkpoints" / "6" / "state"
  largest = max((p for p in state.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(largest.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
  largest.write_bytes(bytes(data))
  run(tiny_config(**STEPS), str(workdir))
  out = capsys.readouterr().out
  assert "Checkpoint step 6 is unusable" in out and "Resumed from checkpoint step 4" in out
  jax.tree.map(np.testing.assert_array_equal, params(workdir), trained[1])
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  steps = [row["step"] for row in rows if "loss" in row]  # the training rows (one per logged step)
  assert steps == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("change, key", [
    ({"quantizer": config_lib.quantizer_config("vq", dim=4, codebook_size=64)}, "quantizer.name"),
    ({"quantizer.levels": (8, 8, 8, 8)}, "quantizer.levels"),
    ({"optimizer.learning_rate": 1e-2}, "optimizer.learning_rate"),
])
def test_resume_with_a_changed_config_is_refused_and_changes_nothing(workdir, change, key):
  """Resuming with a config that changes the model, the data or the optimisation is refused before any work,
  naming the key and both values; the workdir (config.json included) stays byte for byte as it was."""
  before = snapshot(workdir)
  config = tiny_config(**STEPS)
  with config.unlocked():
    for k, v in change.items():
      section, *rest = k.split(".")
      if rest:
        config[section][rest[0]] = v
      else:
        config[section] = v
  with pytest.raises(config_lib.ConfigError, match=rf"{re.escape(key)}: .* in the workdir, .* now"):
    run(config, str(workdir))
  assert snapshot(workdir) == before


def test_resume_may_extend_training(workdir, capsys):
  """Keys that only say how long or how often (train.steps, logging, evaluation, sampling, the mesh) may change
  when resuming; the run says what changed."""
  results = run(tiny_config(**{**STEPS, "train.steps": 8}), str(workdir))
  assert results["step"] == 8
  assert "Resuming with train.steps = 8 (was 6)" in capsys.readouterr().out
  assert json.loads((workdir / "config.json").read_text())["train"]["steps"] == 8


def test_truncated_config_json_is_named(workdir):
  """A truncated config.json is reported with its path and what to do, not as a bare JSONDecodeError."""
  path = workdir / "config.json"
  path.write_text(path.read_text()[:100])
  with pytest.raises(config_lib.ConfigError, match=r"config\.json is not valid JSON.*truncated or corrupt"):
    run(tiny_config(**STEPS), str(workdir))


def test_unknown_config_key_is_one_line(tmp_path):
  """An unknown --config.* key prints one line with the suggestion and exits 2, creating nothing."""
  result = cli("vqgen.main", "--config=configs/demo.py", f"--workdir={tmp_path}/w", "--config.train.stpes=5")
  assert result.returncode == 2
  assert result.stderr.strip() == ("Error: no config key 'stpes' (in a --config.* flag). "
                                   'Did you mean "steps" instead of "stpes"?')
  assert not (tmp_path / "w").exists()


def test_steps_variant_below_warmup_scales_warmup():
  """`:steps=N` below the default warmup scales the warmup to N/10 (and says so) instead of failing."""
  c = config_lib.load_config(os.path.join(ROOT, "configs/demo.py:steps=50"))
  assert (c.train.steps, c.optimizer.warmup_steps) == (50, 5)
  config_lib.validate(c)


def test_truncated_gz_names_the_file(tmp_path):
  """A truncated .gz data file is named, with the command that reinstalls it."""
  with open(os.path.join(FASHION_MNIST, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(f.read()[:2000])
  shutil.copy(os.path.join(FASHION_MNIST, "t10k-images-idx3-ubyte.gz"), tmp_path)
  with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz cannot be read.*reinstall"):
    FashionMNIST("test", str(tmp_path))


def test_truncated_eval_split_fails_before_training(tmp_path):
  """A corrupt eval split is found before step 1, not after the training steps; no checkpoint is written."""
  data = tmp_path / "data"
  data.mkdir()
  for name in os.listdir(FASHION_MNIST):
    if name.startswith("train-"):
      os.symlink(os.path.join(FASHION_MNIST, name), data / name)
  with open(os.path.join(FASHION_MNIST, "t10k-images-idx3-ubyte.gz"), "rb") as f:
    raw = gzip.decompress(f.read())
  (data / "t10k-images-idx3-ubyte").write_bytes(raw[:len(raw) // 2])
  shutil.copy(os.path.join(FASHION_MNIST, "t10k-labels-idx1-ubyte.gz"), data)
  with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte is truncated or corrupt"):
    run(tiny_config(**{**STEPS, "data.data_dir": str(data)}), str(tmp_path / "w"))
  assert not (tmp_path / "w" / "checkpoints").exists() or not os.listdir(tmp_path / "w" / "checkpoints")


def _samples(folder, images, labels):
  folder.mkdir(exist_ok=True)
  np.savez(folder / "samples.npz", images=images, labels=labels)
  return str(folder / "samples.npz")


@pytest.mark.parametrize("images, labels, message", [
    (np.full((100, 28, 28, 1), 200.0, np.float32), np.zeros(100, np.int32), r"span \[200, 200\]; expected \[0, 1\]"),
    (np.zeros((100, 32, 32, 3), np.float32), np.zeros(100, np.int32), r"expected \[N, 28, 28, 1\]"),
    (np.zeros((100, 28, 28), np.float32), np.zeros(100, np.int32), r"expected \[N, 28, 28, 1\]"),
    (np.zeros((100, 28, 28, 1), np.float32), np.zeros(50, np.int32), r"50 labels .* for 100 images"),
    (np.zeros((100, 28, 28, 1), np.uint8), np.zeros(100, np.int32), r"are uint8; expected floats"),
], ids=["0-255", "rgb32", "no-channel", "50-labels", "uint8"])
def test_evaluate_refuses_samples_it_cannot_score(tmp_path, images, labels, message):
  """vqgen.evaluate checks shape, dtype, range and label count before any work, says what it expected, exits 2
  and writes no scores."""
  result = cli("vqgen.evaluate", f"--samples={_samples(tmp_path / 's', images, labels)}")
  assert result.returncode == 2 and re.search(message, result.stderr), result.stderr[-2000:]
  assert sorted(os.listdir(tmp_path / "s")) == ["samples.npz"]


def test_results_are_not_overwritten_without_asking(tmp_path):
  """vqgen.evaluate and vqgen.sample refuse to replace an existing result file unless --overwrite is given."""
  path = _samples(tmp_path / "s", np.zeros((10, 28, 28, 1), np.float32), np.zeros(10, np.int32))
  (tmp_path / "s" / "sample_metrics.json").write_text("{}")
  before = snapshot(tmp_path / "s")
  result = cli("vqgen.evaluate", f"--samples={path}")
  assert result.returncode == 2 and "sample_metrics.json exists; pass --overwrite" in result.stderr
  result = cli("vqgen.sample", f"--workdir={tmp_path / 's'}", "--num_samples=4")
  assert result.returncode == 2 and "already holds samples.npz" in result.stderr and "--output" in result.stderr
  assert snapshot(tmp_path / "s") == before


def test_sample_count_must_be_positive(tmp_path):
  """--num_samples=0 is refused by the flag parser with the flag's name."""
  result = cli("vqgen.sample", f"--workdir={tmp_path}", "--num_samples=0")
  assert result.returncode != 0 and "num_samples" in result.stderr and "Traceback" not in result.stderr


def test_promises_page_lists_every_fault():
  """docs/promises.md names every test of this catalogue and of tests/reliability/, and nothing else."""
  with open(os.path.join(ROOT, "docs", "promises.md")) as f:
    page = f.read()
  tests = set()
  for path in [__file__, *sorted(glob.glob(os.path.join(ROOT, "tests", "reliability", "test_*.py")))]:
    with open(path) as f:
      tests |= set(re.findall(r"^def (test_\w+)", f.read(), re.M))
  tests -= {"test_promises_page_lists_every_fault"}
  assert set(re.findall(r"`(test_\w+)`", page)) - {"test_promises_page_lists_every_fault"} == tests


KILL_FLAGS = ["--config.model.channels=8", "--config.model.num_res_blocks=1", "--config.model.norm_groups=4",
              "--config.data.batch_size=16", "--config.data.eval_batch_size=32", "--config.data.eval_limit=64",
              "--config.optimizer.warmup_steps=1", "--config.train.steps=40", "--config.train.log_every=1",
              "--config.train.checkpoint_every=10"]


def _killed_at(line_prefix: str, workdir, in_save: bool = False) -> list:
  """Runs vqgen.main and SIGKILLs it once it has printed a line starting with `line_prefix` and then, with
  `in_save`, as soon as a checkpoint is being written, else as soon as none is; returns the leftover temporary
  checkpoint folders."""
  proc = subprocess.Popen([sys.executable, "-m", "vqgen.main", "--config=configs/demo.py", f"--workdir={workdir}",
                           *KILL_FLAGS], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  checkpoints = os.path.join(workdir, "checkpoints")
  in_progress = lambda: [n for n in os.listdir(checkpoints) if not n.isdigit()]
  try:
    for line in proc.stdout:
      if line.startswith(line_prefix):
        deadline = time.monotonic() + 30
        while bool(in_progress()) != in_save and time.monotonic() < deadline:  # inside / outside a save
          time.sleep(0.0002)
        proc.kill()  # SIGKILL: no handler, no finally, no flush
        break
  finally:
    proc.kill()
    proc.wait(timeout=60)
  assert proc.returncode == -9
  return in_progress()


def test_sigkill_mid_run_and_mid_save_resumes_exactly(tmp_path):
  """A run killed with SIGKILL between steps, resumed and killed again while a checkpoint is being written, resumes
  with the same command to the same parameters as a run never interrupted."""
  reference = tmp_path / "reference"
  run(load(os.path.join(ROOT, "configs/demo.py"), *KILL_FLAGS), str(reference))
  # From step 19 on, the first kill waits until no save is in flight (a kill between saves: checkpoint 10 is the
  # newest). The same command resumes from step 10; from its step 29 on, the second kill waits for the save of step
  # 30 to begin, so it lands inside it (its temporary folder is left). The third run resumes from step 20 (written
  # by the second run) or 10: its parameters match the reference only if every resumption was exact.
  workdir = tmp_path / "killed"
  _killed_at("step 19/40", workdir, in_save=False)
  assert _killed_at("step 29/40", workdir, in_save=True)  # the kill interrupted a save
  result = cli("vqgen.main", "--config=configs/demo.py", f"--workdir={workdir}", *KILL_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(r"Resumed from checkpoint step (10|20)\.", result.stdout), result.stdout[-2000:]
  jax.tree.map(np.testing.assert_array_equal, params(workdir), params(reference))
