"""Bad input to the sampling and evaluation commands and to the run-file readers: refused with one line that names
the cause and the fix (exit status 2 on the command line), changing nothing on disk; a garbled metrics row is kept
and reported, never silently deleted.

One tiny tokenizer and one tiny MaskGIT prior over its codes are trained once for the module. Each test's docstring
is its promise.
"""

import json
import logging
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import tiny_config
from test_faults import ROOT, cli, snapshot
from test_prior_stage import prior_config
from vqgen import config as config_lib
from vqgen.evaluation.samples import class_labels
from vqgen.stages import PriorStage, build, load_run, run
from vqgen.stages.generate import Generator, SamplingOutOfMemory, balanced_labels, check_codes, read_npz
from vqgen.train import writers

MASKGIT = os.path.join(ROOT, "configs/prior/maskgit_fashion_mnist.py")
CODEBOOK = 1000  # tiny_config's FSQ (8, 5, 5, 5)
CODE_SHAPE = (7, 7)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A finished tiny tokenizer run and a finished tiny MaskGIT prior over its codes: their common parent folder."""
  root = tmp_path_factory.mktemp("runs")
  run(tiny_config(), str(root / "tokenizer"))
  run(prior_config(MASKGIT, str(root / "tokenizer")), str(root / "prior"))
  return root


def one_line(text: str) -> str:
  lines = [line for line in text.splitlines() if line.strip()]
  assert len(lines) == 1 and "Traceback" not in text, text[-3000:]
  return lines[0]


def refused(result) -> str:
  """The one line of a command refused with exit status 2."""
  assert result.returncode == 2, result.stderr[-3000:]
  line = one_line(result.stderr)
  assert line.startswith("Error: ")
  return line


def truncated_npz(path, **arrays) -> str:
  np.savez(path, **arrays)
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  return str(path)


def test_sample_refuses_known_codes_outside_the_vocabulary(runs, tmp_path):
  """vqgen.sample --known with a code outside [0, codebook size] (5000 for 1000 codes) names the first offending
  position and value and the allowed range, exits 2, and writes no samples; both runs stay byte for byte as they
  were."""
  codes = np.full((4,) + CODE_SHAPE, CODEBOOK, np.int32)
  codes[1, 2, 3] = 5000
  np.savez(tmp_path / "edit.npz", codes=codes)
  before = snapshot(runs)
  line = refused(cli("vqgen.sample", f"--workdir={runs / 'prior'}", "--num_samples=4",
                     f"--known={tmp_path / 'edit.npz'}", f"--output={tmp_path / 'out'}"))
  assert (f"--known: {tmp_path / 'edit.npz'}: codes[1, 2, 3] = 5000 is not a code id: each must be in [0, 1000] "
          "(1000 = to be sampled)") in line
  assert not {"samples.npz", "samples.png"} & set(os.listdir(tmp_path / "out"))  # (its log.txt only)
  assert snapshot(runs) == before


def test_sample_refuses_an_unreadable_known_file_before_anything(runs, tmp_path):
  """vqgen.sample --known with a truncated .npz (BadZipFile) is refused in one line naming the file, exit 2, before
  the prior is loaded: no output folder is created and the runs are unchanged."""
  path = truncated_npz(tmp_path / "edit.npz", codes=np.zeros((4,) + CODE_SHAPE, np.int32))
  before = snapshot(runs)
  line = refused(cli("vqgen.sample", f"--workdir={runs / 'prior'}", "--num_samples=4", f"--known={path}",
                     f"--output={tmp_path / 'out'}"))
  assert f"--known: {path} is not a readable .npz (BadZipFile" in line and "--known takes an .npz" in line
  assert not (tmp_path / "out").exists() and snapshot(runs) == before


@pytest.mark.parametrize("codes, kwargs, message", [
    (np.full((2, 7, 7), -7), {}, r"codes\[0, 0, 0\] = -7 is not a code id: each must be >= 0"),
    (np.pad(np.full((1, 7, 7), 5000), ((1, 0), (0, 0), (0, 0))), dict(codebook_size=CODEBOOK),
     r"codes\[1, 0, 0\] = 5000 is not a code id: each must be in \[0, 1000\] \(1000 = to be sampled\)"),
    (np.zeros((2, 7, 7), np.float32), {}, r"codes are float32; expected integers"),
    (np.zeros((2, 49), np.int32), dict(shape=(2, 7, 7)), r"codes must be \[2, 7, 7\] .* got \[2, 49\]"),
], ids=["negative", "5000", "float", "shape"])
def test_known_codes_must_be_code_ids_of_the_prior(codes, kwargs, message):
  """Editing codes must be integers of shape [num_samples, *code shape], each in [0, codebook size] (the codebook
  size = to be sampled): the first offending position and value are named."""
  with pytest.raises(ValueError, match=message):
    check_codes(codes, **kwargs)


@pytest.mark.parametrize("content, message", [
    (None, r"edit\.npz does not exist"),
    ({"tokens": np.zeros((2, 7, 7), np.int32)}, r"edit\.npz has no `codes` array \(it holds tokens\): write it"),
    (b"not an npz", r"edit\.npz is not a readable \.npz"),
], ids=["missing", "no-codes-key", "garbage"])
def test_known_file_missing_or_without_codes_is_named(tmp_path, content, message):
  """A --known file that is missing, not an .npz, or has no `codes` array is named in one line with what to
  write."""
  path = tmp_path / "edit.npz"
  if isinstance(content, bytes):
    path.write_bytes(content)
  elif content is not None:
    np.savez(path, **content)
  with pytest.raises(ValueError, match=message) as e:
    read_npz(str(path), ("codes",))
  one_line(str(e.value))


def _samples(folder, labels) -> str:
  folder.mkdir()
  np.savez(folder / "samples.npz", images=np.zeros((len(labels), 28, 28, 1), np.float32), labels=labels)
  return str(folder / "samples.npz")


def test_evaluate_refuses_labels_outside_the_classes(tmp_path):
  """vqgen.evaluate with every label 11 (10 classes) is refused, naming the bad label, instead of being scored as
  unconditional (which only all-10 labels, the null class, are); exit 2, no scores written."""
  path = _samples(tmp_path / "s", np.full(100, 11, np.int32))
  before = snapshot(tmp_path / "s")
  line = refused(cli("vqgen.evaluate", f"--samples={path}"))
  assert "label 11 (sample 0; 100 of 100 labels) is not a class: labels must lie in [0, 10)" in line
  assert snapshot(tmp_path / "s") == before
  assert class_labels(np.full(5, 10)) is None and class_labels(np.full(5, 11)) is not None


def test_evaluate_refuses_a_truncated_samples_file(tmp_path):
  """vqgen.evaluate on a truncated samples.npz (BadZipFile) names the file in one line, exit 2, writes nothing."""
  (tmp_path / "s").mkdir()
  path = truncated_npz(tmp_path / "s" / "samples.npz", images=np.zeros((100, 28, 28, 1), np.float32),
                       labels=np.zeros(100, np.int32))
  before = snapshot(tmp_path / "s")
  line = refused(cli("vqgen.evaluate", f"--samples={path}"))
  assert f"--samples: {path} is not a readable .npz (BadZipFile" in line
  assert snapshot(tmp_path / "s") == before


def _metrics(path, *rows) -> list:
  lines = [row if isinstance(row, str) else json.dumps(row) + "\n" for row in rows]
  path.write_text("".join(lines))
  return lines


def _warned(caplog, path, number) -> list:
  return [r.getMessage() for r in caplog.records
          if r.levelno == logging.WARNING and r.getMessage().startswith(f"{path}:{number} ")]


def test_garbled_metrics_rows_are_kept_and_reported_on_resume(tmp_path, caplog):
  """On resume (drop_rows_after), a garbled or incomplete metrics.jsonl row ({"step": null}, half a row) is kept
  as it is, with one warning naming the file and line; a torn last line (a write cut by a kill) is dropped with
  such a warning; the rows after the restored step go, as before."""
  path = tmp_path / "metrics.jsonl"
  lines = _metrics(path, {"step": 1, "loss": 1.0}, '{"step": 2, "lo\n', {"step": None}, {"step": 3, "loss": 0.5},
                   {"step": 4, "loss": 0.4}, '{"step": 5, "loss": 0.')
  with caplog.at_level(logging.WARNING):
    writers.drop_rows_after(str(tmp_path), 3)
  assert path.read_text() == "".join(lines[:4])
  for number, what in ((2, "kept as it is"), (3, "kept as it is"), (6, "a torn last line")):
    (message,) = _warned(caplog, path, number)
    assert "is not a metrics row" in message and what in message and "\n" not in message
  assert [row["step"] for row in writers.read_rows(str(path))] == [1, 3]


def test_metrics_readers_skip_garbled_rows_with_a_warning(tmp_path, caplog):
  """Reading metrics.jsonl skips a garbled row with a warning naming its line, and a writer appending after a torn
  last line starts a new line, so the torn text never swallows a new row."""
  path = tmp_path / "metrics.jsonl"
  _metrics(path, {"step": 1, "loss": 1.0}, '{"step": 2, "loss": 0.')
  writers.JsonlWriter(str(path)).write_scalars(2, {"loss": 0.5})
  with caplog.at_level(logging.WARNING):
    rows = writers.read_rows(str(path))
  assert rows == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}]
  assert len(_warned(caplog, path, 2)) == 1 and not _warned(caplog, path, 1) + _warned(caplog, path, 3)


@pytest.mark.parametrize("content", ["[]", "null"])
def test_config_json_that_is_not_a_config_is_named(runs, tmp_path, content):
  """A run's config.json holding valid JSON that is no config ([] or null) is refused with its path and how to
  restore it, before any work; the workdir stays byte for byte as it was."""
  workdir = tmp_path / "tokenizer"
  shutil.copytree(runs / "tokenizer", workdir)
  (workdir / "config.json").write_text(content)
  before = snapshot(workdir)
  with pytest.raises(config_lib.ConfigError) as e:
    run(tiny_config(), str(workdir))
  assert one_line(str(e.value)).startswith(f"{workdir / 'config.json'} holds {content}, not a run's config")
  assert "Restore it from a copy" in str(e.value)
  assert snapshot(workdir) == before


def test_negative_seed_is_refused_before_any_work(tmp_path):
  """--config.seed=-1 fails validation in one line naming the key and its range; no workdir is created."""
  config = config_lib.load_config(os.path.join(ROOT, "configs/demo.py"))
  with config.unlocked():
    config.seed = -1
  with pytest.raises(config_lib.ConfigError) as e:
    run(config, str(tmp_path / "w"))
  assert one_line(str(e.value)) == "Invalid config value seed=-1: must be an integer in [0, 2**63)."
  assert not (tmp_path / "w").exists()


RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 123456789 bytes.\nBufferAssignment..."


def _program_failing_with(message):
  """A stand-in for Generator._program whose compiled sampling fails with the XLA runtime error `message`."""
  def program(self, batch, rng):
    def compiled(*args):
      raise jax.errors.JaxRuntimeError(message)
    return compiled
  return program


def test_training_sampling_out_of_memory_names_the_config_key(runs, monkeypatch):
  """A sampling batch that does not fit in device memory (the prior's end-of-training samples) is refused in one
  line naming config.sampling.batch_size, the size that failed and a smaller one; other XLA errors pass unchanged."""
  config, prior, stage = load_run(str(runs / "prior"), PriorStage)
  generator = Generator(prior, stage.tokenizer, stage.code_shape, build.sampler_kwargs(config))
  monkeypatch.setattr(Generator, "_program", _program_failing_with(RESOURCE_EXHAUSTED))
  with pytest.raises(SamplingOutOfMemory) as e:
    generator(balanced_labels(20, 10), jax.random.key(0), 10)
  assert one_line(str(e.value)) == (
      "Sampling ran out of device memory at batch size 10 (RESOURCE_EXHAUSTED: Out of memory while trying to "
      "allocate 123456789 bytes.): lower --config.sampling.batch_size (e.g. --config.sampling.batch_size=5) and run "
      "the command again.")
  monkeypatch.setattr(Generator, "_program", _program_failing_with("INTERNAL: something else"))
  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL: something else"):
    generator(balanced_labels(20, 10), jax.random.key(0), 10)


SAMPLE_OUT_OF_MEMORY = f"""
import sys, jax
from vqgen.stages.generate import Generator
def program(self, batch, rng):
  def compiled(*args):
    raise jax.errors.JaxRuntimeError({RESOURCE_EXHAUSTED!r})
  return compiled
Generator._program = program
from vqgen.cli.sample import cli
cli()
"""


def test_sample_out_of_memory_names_the_batch_size_flag(runs, tmp_path):
  """vqgen.sample whose batch does not fit in device memory prints one line naming --batch_size and the size that
  failed (not XLA's 54-line RESOURCE_EXHAUSTED), exits 2, writes no samples and leaves the runs unchanged."""
  before = snapshot(runs)
  result = subprocess.run([sys.executable, "-c", SAMPLE_OUT_OF_MEMORY, f"--workdir={runs / 'prior'}",
                           "--num_samples=8", "--batch_size=8", f"--output={tmp_path / 'out'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
  line = refused(result)
  assert "Sampling ran out of device memory at batch size 8 (RESOURCE_EXHAUSTED" in line
  assert line.endswith("lower --batch_size (e.g. --batch_size=4) and run the command again.")
  assert not {"samples.npz", "samples.png"} & set(os.listdir(tmp_path / "out"))  # (its log.txt only)
  assert snapshot(runs) == before
