"""Notebooks under colabs/ execute top to bottom (tiny settings)."""

import glob
import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "colabs", "*.ipynb"))),
                         ids=os.path.basename)
def test_notebook_runs(path, monkeypatch):
  monkeypatch.setenv("VQGEN_NOTEBOOK_TINY", "1")
  # One device, like a user's laptop kernel; compiled without LLVM's optimisation passes, like the rest of the suite.
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0")
  nb = nbformat.read(path, as_version=4)
  NotebookClient(nb, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": os.path.dirname(path)}}).execute()
  outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
