"""A 2-process run on localhost (CPU, jax.distributed) trains a few steps and saves a checkpoint."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from conftest import TINY_FLAGS
from vqgen.train.checkpoint import UNDIGESTED

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [*TINY_FLAGS, "--config.train.steps=3", "--config.train.checkpoint_every=3"]


INFO_LINE = re.compile(r"^I\d{4} ", re.M)  # an absl INFO record


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_run(tmp_path):
  port = free_port()
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen(
      [sys.executable, "-m", "vqgen.main", "--config=configs/demo.py", f"--workdir={tmp_path}/run",
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}", *TINY],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = []
  for p in procs:
    try:
      outputs.append(p.communicate(timeout=300)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  # The console shows progress only; each process's log lines (absl, Orbax) go to its log file in the workdir.
  assert "step 3/3" in outputs[0] and not INFO_LINE.search(outputs[0] + outputs[1]), outputs[0][-3000:]
  with open(tmp_path / "run" / "log.0.txt") as f:
    assert "process 0/2, 2 local / 4 global devices" in f.read()
  with open(tmp_path / "run" / "log.1.txt") as f:
    assert "process 1/2" in f.read()
  assert os.path.isdir(tmp_path / "run" / "checkpoints" / "3" / "state")
  data_files = set(os.listdir(tmp_path / "run" / "checkpoints" / "3" / "data"))
  assert {"process_0-of-2.json", "process_1-of-2.json"} <= data_files  # each process's iterator state
  step = tmp_path / "run" / "checkpoints" / "3"
  # Process 0 digests the step once every process has written its files (Orbax's commit, before the rename).
  digests = json.loads((step / "vqgen_digest.process_0.json").read_text())
  files = {str(p.relative_to(step)) for p in step.rglob("*") if p.is_file() and "vqgen_digest" not in p.name}
  assert set(digests) == files - set(UNDIGESTED) and any("process_1" in name for name in digests)
  assert (tmp_path / "run" / "metrics.json").exists()
