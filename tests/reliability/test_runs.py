"""Runs a user can trust: no command deletes or sets aside a run it cannot use, every checkpoint loaded is verified,
a prior pins its tokenizer, one run per workdir, and a stopped or failing run says so in one line and keeps what it
has. Each test runs the real entry function or command on a tiny config and asserts the outcome class: refused with
the workdir byte for byte unchanged, or recovered. docs/promises.md lists these tests.

Each test's docstring is its promise.
"""

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from test_config import load
from test_faults import ROOT, cli, params, snapshot as _snapshot
from vqgen import stages
from vqgen.errors import IncompatibleCheckpoint, Refusal, RunInUse, SaveFailed
from vqgen.stages import PriorStage, run
from vqgen.stages.classifier import CACHE_MARKER, feature_classifier, perceptual_network
from vqgen.train import checkpoint as checkpoint_lib
from vqgen.train.checkpoint import Checkpointer, abstract_with_shardings
from vqgen.train.lock import WorkdirLock

def snapshot(folder) -> dict:
  """{relative path: SHA-256} of the files below `folder`, but the lock file a run rewrites with its holder."""
  return {k: v for k, v in _snapshot(folder).items() if os.path.basename(k) != "vqgen.lock"}


STEPS = {"train.steps": 4, "train.checkpoint_every": 2, "train.log_every": 1}
PRIOR_TINY = ["--config.network.width=32", "--config.network.depth=1", "--config.network.heads=2",
              "--config.data.batch_size=16", "--config.data.eval_batch_size=32", "--config.data.eval_limit=64",
              "--config.train.steps=2", "--config.train.log_every=1", "--config.train.checkpoint_every=2",
              "--config.optimizer.warmup_steps=1", "--config.sampling.num_samples=10",
              "--config.sampling.batch_size=10", "--config.sampling.steps=2", "--config.evaluation.metrics=False"]
MASKGIT = os.path.join(ROOT, "configs/prior/maskgit_fashion_mnist.py")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
  """A finished 4-step tiny tokenizer run (checkpoints 2 and 4)."""
  workdir = tmp_path_factory.mktemp("tok") / "run"
  run(tiny_config(**STEPS), str(workdir))
  return workdir


@pytest.fixture
def tokenizer_copy(tokenizer, tmp_path):
  copy = tmp_path / "tok"
  shutil.copytree(tokenizer, copy)
  return copy


def prior_config(tokenizer_dir, *overrides):
  return load(f"{MASKGIT}:tokenizer={tokenizer_dir}", *PRIOR_TINY, *overrides)


# --- Data loss ---------------------------------------------------------------------------------------------------

def test_a_network_cache_never_deletes_a_folder_it_did_not_make(tokenizer_copy):
  """`train_classifier --workdir=<a tokenizer run>` and a perceptual network pointed at one are refused in one line;
  the run stays byte for byte (a cache deletes only a folder holding its own marker)."""
  before = snapshot(tokenizer_copy)
  result = cli("vqgen.cli.train_classifier", f"--workdir={tokenizer_copy}")
  assert result.returncode == 2 and "does not hold a feature classifier" in result.stderr, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  with pytest.raises(Refusal, match="does not hold a perceptual network"):
    perceptual_network(str(tokenizer_copy))
  assert snapshot(tokenizer_copy) == before


def test_a_corrupt_classifier_cache_is_retrained_but_a_named_classifier_is_refused(tmp_path, capsys):
  """The sample metrics' classifier restores exactly the step its metrics.json reports: when that step fails its
  digest, the cache's own folder is trained again (never an older step scoring in its place), while the same
  damage in a classifier workdir a user named is refused with the folder unchanged."""
  cache = tmp_path / "cache"
  feature_classifier(str(cache), steps=2)
  named = tmp_path / "named"
  shutil.copytree(cache, named, ignore=shutil.ignore_patterns(CACHE_MARKER))
  for folder in (cache, named):
    flip_largest_file(folder / "checkpoints" / "2" / "state")
  before = snapshot(named)
  with pytest.raises(Refusal, match="cannot be used .* not created by vqgen's cache, so nothing was changed"):
    feature_classifier(str(named), steps=2)
  assert snapshot(named) == before
  feature_classifier(str(cache), steps=2)
  assert "is not usable" in capsys.readouterr().out and (cache / CACHE_MARKER).exists()
  assert checkpoint_lib.verify_step(str(cache / "checkpoints" / "2")) is None


def flip_largest_file(folder):
  largest = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
  data = bytearray(largest.read_bytes())
  data[len(data) // 2] ^= 0xFF
  largest.write_bytes(bytes(data))


def test_a_checkpoint_of_another_model_is_refused_and_nothing_moves(tmp_path):
  """A verified checkpoint whose arrays do not fit the model (another config) is incompatible, not corrupt: the
  restore names the arrays that differ and moves nothing."""
  ckpt = Checkpointer(str(tmp_path / "checkpoints"))
  state = {"encoder": {"kernel": jnp.ones((3, 4))}, "step": jnp.zeros((), jnp.int32)}
  ckpt.save(2, state, config={"stage": "tokenizer"})
  ckpt.wait()
  before = snapshot(tmp_path)
  other = {"encoder": {"kernel": jnp.ones((3, 8))}, "step": jnp.zeros((), jnp.int32), "extra": jnp.ones(2)}
  shardings = jax.tree.map(lambda x: x.sharding, other)
  with pytest.raises(IncompatibleCheckpoint, match=r"encoder/kernel: \(3, 4\) float32 in the checkpoint, \(3, 8\)"):
    ckpt.restore(abstract_with_shardings(other, shardings), set_aside=True)
  assert snapshot(tmp_path) == before and not os.path.exists(tmp_path / "checkpoints_unusable")
  ckpt.close()


def test_a_run_without_config_json_is_checked_against_its_checkpoints(tokenizer_copy):
  """With config.json deleted, resuming with another model is still refused (each checkpoint carries its config),
  naming the key and both values; nothing is moved or written."""
  os.remove(tokenizer_copy / "config.json")
  before = snapshot(tokenizer_copy)
  with pytest.raises(Refusal, match=r"model.channels: 8 in the workdir, 16 now"):
    run(tiny_config(**STEPS, **{"model.channels": 16}), str(tokenizer_copy))
  assert snapshot(tokenizer_copy) == before


# --- Verified checkpoints ----------------------------------------------------------------------------------------

def test_every_step_on_disk_has_its_digest_the_moment_it_appears(tmp_path):
  """The digest is written inside the save, before Orbax renames the step into place: a step folder that exists
  (after any kill) is verifiable, and flipped bytes in the newest step are caught, not restored. Steps an older
  vqgen digested after the commit still verify."""
  ckpt = Checkpointer(str(tmp_path / "checkpoints"))
  state = {"w": jnp.arange(4096, dtype=jnp.float32)}
  ckpt.save(1, state)
  folder = tmp_path / "checkpoints" / "1"
  deadline = time.monotonic() + 60
  while not folder.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
  assert (folder / f"{checkpoint_lib.DIGEST}.process_0.json").exists()  # no window without it
  ckpt.wait()
  assert checkpoint_lib.verify_step(str(folder)) is None
  older = tmp_path / "older"  # a digest of an older vqgen (written after the commit, Orbax's metadata included)
  shutil.copytree(folder, older)
  (older / f"{checkpoint_lib.DIGEST}.process_0.json").write_text(
      json.dumps(checkpoint_lib.file_digests(str(older), exclude=())))
  assert "_CHECKPOINT_METADATA" in json_read(older / f"{checkpoint_lib.DIGEST}.process_0.json")
  assert checkpoint_lib.verify_step(str(older)) is None
  flip_largest_file(folder)
  assert "changed since the save" in checkpoint_lib.verify_step(str(folder))
  with pytest.raises(Refusal, match="No checkpoint .* can be used"):
    ckpt.restore(abstract_with_shardings(state, jax.tree.map(lambda x: x.sharding, state)))
  ckpt.close()


# --- The prior pins its tokenizer --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prior(tokenizer, tmp_path_factory):
  """A tiny MaskGIT prior over a copy of the module's tokenizer (the copy is this fixture's to change), and the
  tokenizer's files before and after the prior trained."""
  root = tmp_path_factory.mktemp("pinned")
  shutil.copytree(tokenizer, root / "tok")
  before = snapshot(root / "tok")
  run(prior_config(root / "tok"), str(root / "prior"))
  return root / "tok", root / "prior", (before, snapshot(root / "tok"))


def test_a_prior_writes_nothing_into_its_tokenizer_workdir(prior):
  """Training a prior leaves its tokenizer's workdir byte for byte (codes are cached in $VQGEN_CACHE_DIR, the
  tokenizer restored read-only), so a prior can train over a read-only or shared tokenizer run."""
  before, after = prior[2]
  assert after == before


def test_a_prior_records_its_tokenizer_and_finished_runs_are_not_redone(prior, capsys):
  """A prior run records its tokenizer's workdir, step and weights digest (tokenizer.json); the same command on the
  finished run has nothing to do and returns its metrics; with other sampling settings it is refused (it would
  replace samples.npz and metrics.json), and the workdir stays byte for byte."""
  tok, workdir, _ = prior
  pin = json_read(workdir / "tokenizer.json")
  assert pin["step"] == 4 and len(pin["weights_sha256"]) == 64 and pin["workdir"] == str(tok)
  before = snapshot(workdir)
  results = run(prior_config(tok), str(workdir))
  assert results["step"] == 2 and "has finished" in capsys.readouterr().out
  with pytest.raises(Refusal, match="would replace its samples.npz and metrics.json"):
    run(prior_config(tok, "--config.sampling.steps=4"), str(workdir))
  assert snapshot(workdir) == before


def json_read(path):
  with open(path) as f:
    return json.load(f)


def test_a_prior_refuses_a_tokenizer_that_changed_under_it(prior, tmp_path):
  """A tokenizer trained further (its pinned step rotated out), whose pinned step is damaged, or whose pinned step's
  weights changed makes the prior's resume and `vqgen.sample` refuse, naming both identities (never decoding with
  another step); neither workdir changes."""
  tok, workdir, _ = prior
  moved = tmp_path / "tok"
  shutil.copytree(tok, moved)
  pin = json_read(workdir / "tokenizer.json")
  prior_copy = _repointed(workdir, tmp_path / "prior", tok, moved)
  run(tiny_config(**{**STEPS, "train.steps": 8, "train.keep_checkpoints": 2}), str(moved))  # steps 6, 8 kept
  before = snapshot(prior_copy), snapshot(moved)
  with pytest.raises(Refusal, match=r"tokenizer changed under this prior: .* step 4 .* no longer holds"):
    PriorStage(prior_config(moved), workdir=str(prior_copy))
  result = cli("vqgen.sample", f"--workdir={prior_copy}", f"--output={tmp_path / 'out'}", "--num_samples=2")
  assert result.returncode == 2 and "tokenizer changed under this prior" in result.stderr, result.stderr[-2000:]
  assert (snapshot(prior_copy), snapshot(moved)) == before
  # The pinned step is damaged: refused (never an older step decoding in its place).
  damaged = tmp_path / "damaged"
  shutil.copytree(tok, damaged)
  flip_largest_file(damaged / "checkpoints" / "4" / "state")
  with pytest.raises(Refusal, match=r"No checkpoint in .*damaged.* can be used \(step 4: "):
    PriorStage(prior_config(damaged), workdir=str(_repointed(workdir, tmp_path / "prior3", tok, damaged)))
  # The pinned step exists but holds other weights (a tokenizer retrained from scratch into the same workdir).
  (prior_copy / "tokenizer.json").write_text(
      (prior_copy / "tokenizer.json").read_text().replace('"step": 4', '"step": 8'))
  with pytest.raises(Refusal, match=rf"trained on step 8 .*weights {pin['weights_sha256'][:16]}"):
    PriorStage(prior_config(moved), workdir=str(prior_copy))


@pytest.mark.parametrize("case", ["missing", "no checkpoint", "a prior workdir"])
def test_a_prior_pointed_at_no_tokenizer_is_one_line(case, prior, tmp_path):
  """A prior config whose tokenizer workdir is missing, has no checkpoint, or holds a prior is refused in one line
  that names the folder, before any work."""
  target = {"missing": tmp_path / "nothing", "no checkpoint": tmp_path / "empty", "a prior workdir": prior[1]}[case]
  if case == "no checkpoint":
    shutil.copytree(prior[0], target, ignore=shutil.ignore_patterns("checkpoints"))
  expected = {"missing": "does not exist", "no checkpoint": "No checkpoint in", "a prior workdir": "holds a 'prior'"}
  with pytest.raises(Refusal, match=expected[case]):
    PriorStage(_with_tokenizer(target))


def _repointed(prior_dir, copy, old_tokenizer, new_tokenizer):
  """A copy of a prior run whose config and pin name another tokenizer workdir."""
  shutil.copytree(prior_dir, copy)
  for name in ("config.json", "tokenizer.json"):
    (copy / name).write_text((copy / name).read_text().replace(str(old_tokenizer), str(new_tokenizer)))
  return copy


def _with_tokenizer(path):
  config = prior_config("unused")
  with config.unlocked():
    config.tokenizer_workdir = str(path)
  return config


# --- One run per workdir, stopping and failing in one line --------------------------------------------------------

def test_a_second_run_into_a_live_workdir_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
  """While a process holds a workdir, another run there is refused with the holder's pid and host; once the holder
  is killed (-9), the lock is taken over without any clean-up."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vqgen.train.lock import WorkdirLock; "
                             f"WorkdirLock({str(workdir)!r}).acquire(); print('held', flush=True); time.sleep(600)"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunInUse, match=rf"in use by process {holder.pid} on host "):
      stages.train(tiny_config(**STEPS), str(workdir))
    assert not (workdir / "checkpoints").exists()
  finally:
    holder.kill()
    holder.wait()
  with WorkdirLock(str(workdir)):  # the kernel released the dead holder's lock
    assert json_read(workdir / "vqgen.lock")["pid"] == os.getpid()


def test_sigint_saves_the_current_step_and_resumes_exactly(tmp_path):
  """SIGINT (Ctrl-C) or SIGTERM (preemption) during training saves the step just trained and ends with one line
  and exit status 2; the same command resumes from that step to the parameters of an uninterrupted run."""
  flags = ["--config=configs/demo.py", "--config.model.channels=8", "--config.model.num_res_blocks=1",
           "--config.model.norm_groups=4", "--config.data.batch_size=16", "--config.data.eval_batch_size=32",
           "--config.data.eval_limit=64", "--config.optimizer.warmup_steps=1", "--config.train.steps=30",
           "--config.train.log_every=1", "--config.train.checkpoint_every=100"]
  workdir = tmp_path / "run"
  proc = subprocess.Popen([sys.executable, "-m", "vqgen.main", *flags, f"--workdir={workdir}"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  for line in proc.stdout:
    if line.startswith("step 5/30"):
      proc.send_signal(signal.SIGINT)
      break
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 2, err[-3000:]
  stopped = re.search(r"Error: Stopped by SIGINT after step (\d+), which is saved", err)
  assert stopped and "Traceback" not in err, err[-3000:]
  assert Checkpointer(str(workdir / "checkpoints")).all_steps() == [int(stopped.group(1))]
  result = cli("vqgen.main", *flags, f"--workdir={workdir}")
  assert result.returncode == 0 and f"Resumed from checkpoint step {stopped.group(1)}" in result.stdout
  reference = tmp_path / "reference"
  assert cli("vqgen.main", *flags, f"--workdir={reference}").returncode == 0
  jax.tree.map(np.testing.assert_array_equal, params(workdir), params(reference))


def test_a_failed_save_stops_training_at_once(tmp_path, monkeypatch):
  """A checkpoint that cannot be written (disk full) stops the run at that step with one message naming the step,
  the cause and the newest complete checkpoint; no step after it is trained."""
  original = Checkpointer.save

  def failing(self, step, *args, **kwargs):
    if step == 4:  # what Orbax raises when the disk is full, at the point vqgen.train.checkpoint starts a save
      self.wait()
      self._saving = step
      with self._failures():
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path))
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(Checkpointer, "save", failing)
  with pytest.raises(SaveFailed, match=r"step 4 could not be written .*No space left.* newest complete checkpoint "
                                       r"is step 2"):
    run(tiny_config(**{**STEPS, "train.steps": 8}), str(tmp_path / "run"))
  rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
  assert max(int(re.search(r'"step": (\d+)', r).group(1)) for r in rows) == 4


@pytest.mark.parametrize("where", ["a file", "inside a file"])
def test_a_workdir_that_cannot_be_a_folder_is_one_line(where, tmp_path):
  """--workdir naming a file (or a path below one) is refused in one line before anything is written."""
  (tmp_path / "f").write_text("mine")
  workdir = tmp_path / "f" if where == "a file" else tmp_path / "f" / "run"
  result = cli("vqgen.main", "--config=configs/demo.py", f"--workdir={workdir}")
  assert result.returncode == 2 and "Traceback" not in result.stderr and "is a file" in result.stderr
  assert (tmp_path / "f").read_text() == "mine"


def test_missing_data_is_one_line(tmp_path):
  """A data folder that does not exist is one line naming it and how to install the data (exit 2)."""
  result = cli("vqgen.main", "--config=configs/demo.py", f"--workdir={tmp_path / 'run'}",
               f"--config.data.data_dir={tmp_path / 'nowhere'}")
  assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
  assert "does not exist" in result.stderr and "dataset-fashion-mnist" in result.stderr


def test_a_full_disk_stops_at_the_first_failed_save(tmp_path):
  """On a real full disk (a small tmpfs), the run stops at the first write that fails, with one line and no library
  traceback (exit 2): at a checkpoint (written in the background), it names the step, the cause and the newest
  complete checkpoint, and trains no step past the next save; every step left on disk verifies."""
  disk = tmp_path / "disk"
  disk.mkdir()
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=800k", "tmpfs", str(disk)], capture_output=True)
  if mounted.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the monkeypatched test covers it")
  try:
    result = cli("vqgen.main", "--config=configs/demo.py", f"--workdir={disk / 'run'}", "--config.model.channels=8",
                 "--config.model.num_res_blocks=1", "--config.model.norm_groups=4", "--config.data.batch_size=16",
                 "--config.data.eval_batch_size=32", "--config.data.eval_limit=64",
                 "--config.optimizer.warmup_steps=1", "--config.train.steps=40", "--config.train.log_every=1",
                 "--config.train.checkpoint_every=2", "--config.train.keep_checkpoints=10")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert re.search(r"^Error: .*No space left on device", result.stderr), result.stderr[-3000:]
    steps = checkpoint_lib.step_folders(str(disk / "run" / "checkpoints"))
    failed = re.search(r"The checkpoint of step (\d+) could not be written .*newest complete checkpoint is step "
                       r"(\d+)", result.stderr)
    if failed:  # (else another write, e.g. TensorBoard's, met the full disk first: one line all the same)
      step, newest = int(failed.group(1)), int(failed.group(2))
      assert newest == step - 2 and f"step {step + 3}/40" not in result.stdout  # no step past the next save
      assert steps and steps[-1] == newest
    assert all(checkpoint_lib.verify_step(str(disk / "run" / "checkpoints" / str(s))) is None for s in steps)
  finally:
    subprocess.run(["umount", str(disk)], check=False)


def test_a_read_only_workdir_is_one_line():
  """A workdir this user may not write is refused in one line before anything is written (as root, the command
  runs as user nobody: root writes anywhere)."""
  folder = tempfile.mkdtemp(prefix="vqgen-read-only-")  # (pytest's own tmp folders are root's alone)
  try:
    os.chmod(folder, 0o755)
    workdir = os.path.join(folder, "run")
    os.mkdir(workdir)
    with open(os.path.join(workdir, "keep"), "w") as f:
      f.write("mine")
    os.chmod(workdir, 0o555)
    command = [sys.executable, "-m", "vqgen.main", "--config=configs/demo.py", f"--workdir={workdir}"]
    if os.geteuid() == 0:
      if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no user to whom the folder is read-only")
      command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert "is not writable" in result.stderr
    assert sorted(os.listdir(workdir)) == ["keep"]
  finally:
    os.chmod(os.path.join(folder, "run"), 0o755)
    shutil.rmtree(folder)
