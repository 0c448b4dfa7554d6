"""The package's layering (docs/design.md, "Layout"): which part of vqgen may import which, checked on the source.

Model packages are leaves; config, stages and cli sit above them in that order; no function hides an import
unless it is an optional dependency that pulls in TensorFlow. `import vqgen` and every model package work without
TensorFlow.
"""

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "vqgen")
MODELS = {"quantizers", "tokenizers", "priors", "evaluation"}
LEAVES = {"data", "images", "train", "nn"}
# What each part may import (besides itself).
ALLOWED = {
    "__init__": set(),
    "errors": set(),  # vqgen.errors.Refusal: every part may raise it
    "quantizers": set(),
    "tokenizers": {"quantizers", "nn"},
    "priors": {"nn"},
    "evaluation": {"quantizers", "tokenizers"},
    "data": set(),
    "images": set(),
    "train": set(),
    "nn": set(),
    "config": {"quantizers", "tokenizers", "priors", "nn"},
    "stages": MODELS | LEAVES | {"config"},
    "cli": MODELS | LEAVES | {"config", "stages"},
    # `python -m vqgen.main` etc.: thin shims over vqgen.cli
    "main": {"cli"}, "demo": {"cli"}, "sample": {"cli"}, "evaluate": {"cli"},
}
# Imports that may sit inside a function: optional dependencies that import TensorFlow.
OPTIONAL = ("clu", "tensorflow", "tensorflow_datasets")


def sources():
  for folder, _, files in os.walk(PACKAGE):
    for name in sorted(files):
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        yield os.path.relpath(path, PACKAGE), path


def part(relpath: str) -> str:
  """vqgen's part a file belongs to: its top folder, or its module name at the top level."""
  first = relpath.split(os.sep)[0]
  return first[:-3] if first.endswith(".py") else first


def vqgen_imports(tree):
  """(line, imported part) for every import of vqgen in a parsed file."""
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module] if node.module != "vqgen" else [f"vqgen.{a.name}" for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      raise AssertionError(f"relative import at line {node.lineno}: use absolute vqgen.* imports")
    else:
      continue
    for name in names:
      if name == "vqgen" or name.startswith("vqgen."):
        yield node.lineno, name.split(".")[1] if "." in name else "__init__"


for _part, _allowed in ALLOWED.items():
  if _part != "errors":
    _allowed.add("errors")


def test_every_part_has_a_rule():
  assert {part(rel) for rel, _ in sources()} == set(ALLOWED)


@pytest.mark.parametrize("relpath, path", list(sources()), ids=[rel for rel, _ in sources()])
def test_imports_point_down_the_layers(relpath, path):
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  me = part(relpath)
  wrong = [(line, target) for line, target in vqgen_imports(tree) if target != me and target not in ALLOWED[me]]
  assert not wrong, (f"vqgen/{relpath} ({me}) imports {wrong}; {me} may import only {sorted(ALLOWED[me])} "
                     "(docs/design.md, Layout)")


@pytest.mark.parametrize("relpath, path", list(sources()), ids=[rel for rel, _ in sources()])
def test_no_hidden_imports(relpath, path):
  """Imports live at the top of a file, except optional TensorFlow-importing ones, which say so."""
  with open(path) as f:
    text = f.read()
  lines = text.splitlines()
  for node in ast.walk(ast.parse(text, path)):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for inner in ast.walk(node):
        if isinstance(inner, (ast.Import, ast.ImportFrom)):
          module = inner.module if isinstance(inner, ast.ImportFrom) else inner.names[0].name
          assert module.split(".")[0] in OPTIONAL and "TensorFlow" in lines[inner.lineno - 1], (
              f"vqgen/{relpath}:{inner.lineno} imports {module} inside {node.name}(); move it to the top of the "
              "file (only optional TensorFlow-importing dependencies may be imported late, with a comment)")


def test_model_packages_import_without_tensorflow():
  code = ("import sys\nimport vqgen, vqgen.quantizers, vqgen.tokenizers, vqgen.priors, vqgen.evaluation.frechet, "
          "vqgen.evaluation.samples, vqgen.evaluation.reconstruction, vqgen.data, vqgen.train.trainer, vqgen.config, "
          "vqgen.stages, vqgen.cli.main\n"
          "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets'))\n"
          "assert not loaded, loaded\nprint('ok')")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
