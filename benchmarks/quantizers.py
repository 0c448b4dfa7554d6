"""Quantizer forward+backward time and memory: vqgen (jax.jit) vs vector-quantize-pytorch, same CPU, one run.

  python benchmarks/quantizers.py [--repeats 5] [--threads 2] [--only vq_1024,fsq]
  (the peer is optional: pip install -r requirements-bench.txt; without it only vqgen is measured)

Each case quantizes N vectors in training mode and backpropagates sum(quantized^2) + the quantizer's losses.
Times are medians over repeats after a warm-up (vqgen: compiled once). Memory: vqgen's is XLA's temporary +
argument bytes of the compiled step; the peer's is the growth of the process's peak RSS during its case (run in
a fresh subprocess), so both count what the computation itself needs. For VQ the table also prints two bounds:
"matmul bound", the distance product's 2 N K d FLOPs at the throughput of a large square f32 matmul, and "product
ms", the time XLA takes for that one [N, d] x [d, K] product alone (its output is N K floats: on a CPU this shape
runs far below the square matmul's rate, and is what a one-matrix VQ pays before it even takes the argmin).
Writes benchmarks/results/quantizers.{md,json}.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.common import median_ms, write_results  # noqa: E402

N = 8192
# name: (vqgen constructor source, peer constructor source, input dim, tokens)
CASES = {
    "fsq_8555": ("FSQ((8, 5, 5, 5))", "FSQ(levels=[8, 5, 5, 5])", 4, N),
    "vq_1024": ("VQ(dim=64, codebook_size=1024, learning='ema', gradient='rotation', rngs=nnx.Rngs(0))",
                "VectorQuantize(dim=64, codebook_size=1024)", 64, N),
    "vq_16384": ("VQ(dim=64, codebook_size=16384, learning='ema', gradient='rotation', rngs=nnx.Rngs(0))",
                 "VectorQuantize(dim=64, codebook_size=16384)", 64, N),
    "lfq_2^10": ("LFQ(2**10)", "LFQ(codebook_size=2**10, dim=10, entropy_loss_weight=0.1)", 10, N),
    "lfq_2^16": ("LFQ(2**16)", "LFQ(codebook_size=2**16, dim=16, entropy_loss_weight=0.1)", 16, N),
    "lfq_2^18_2048tok": ("LFQ(2**18)", "LFQ(codebook_size=2**18, dim=18, entropy_loss_weight=0.1)", 18, 2048),
    "vq_65536": ("VQ(dim=64, codebook_size=65536, learning='ema', gradient='rotation', rngs=nnx.Rngs(0))",
                 "VectorQuantize(dim=64, codebook_size=65536)", 64, N),
    "rvq_8x1024": ("build_quantizer('residual', quantizer='vq', num_quantizers=8, dim=64, codebook_size=1024, "
                   "learning='ema', rngs=nnx.Rngs(0))",
                   "ResidualVQ(dim=64, num_quantizers=8, codebook_size=1024)", 64, N),
}


def rss_mb(field: str) -> float:
  """VmRSS (current) or VmHWM (peak since the last reset) of this process, from /proc (Linux)."""
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  return float("nan")


def reset_peak_rss() -> None:
  with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM to the current RSS
    f.write("5")


def run_vqgen(name, repeats):
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel,unused-import
  from vqgen.quantizers import FSQ, LFQ, VQ, build_quantizer  # pylint: disable=import-outside-toplevel,unused-import
  source, _, dim, n = CASES[name]
  model = eval(source)  # pylint: disable=eval-used
  graphdef, state = nnx.split(model)
  state = state.to_pure_dict()  # merged into fresh Variables inside the traced loss (EMA updates mutate them)

  def loss(z, state):
    out = nnx.merge(graphdef, state)(z, train=True)
    return jnp.sum(out.quantized ** 2) + sum(out.losses.values())

  step = jax.jit(jax.value_and_grad(loss))
  z = jax.random.normal(jax.random.key(0), (n, dim))
  compiled = step.lower(z, state).compile()
  mem = compiled.memory_analysis()
  memory_mb = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2**20
  return {"ms": median_ms(compiled, (z, state), repeats), "memory_mb": memory_mb}


def run_peer(name, repeats, threads):
  import torch  # pylint: disable=import-outside-toplevel
  from vector_quantize_pytorch import FSQ, LFQ, ResidualVQ, VectorQuantize  # pylint: disable=import-outside-toplevel,unused-import
  torch.set_num_threads(threads)
  _, source, dim, n = CASES[name]
  model = eval(source)  # pylint: disable=eval-used
  model.train()
  z = torch.randn(1, n, dim, requires_grad=True)

  def step():
    out = model(z)
    quantized, rest = out[0], out[2:] if len(out) > 2 else ()
    loss = (quantized ** 2).sum() + sum(r.sum() for r in rest if torch.is_tensor(r))
    loss.backward()

  reset_peak_rss()
  base = rss_mb("VmRSS")
  step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return {"ms": 1e3 * sorted(times)[len(times) // 2], "memory_mb": rss_mb("VmHWM") - base}


def product_ms(n: int, k: int, d: int, repeats: int) -> float:
  """Median time of the one [n, d] x [d, k] float32 product a one-matrix VQ computes."""
  import jax  # pylint: disable=import-outside-toplevel
  x, c = jax.random.normal(jax.random.key(0), (n, d)), jax.random.normal(jax.random.key(1), (k, d))
  return median_ms(jax.jit(lambda x, c: x @ c.T), (x, c), repeats)


def matmul_gflops() -> float:
  import jax  # pylint: disable=import-outside-toplevel
  a = jax.random.normal(jax.random.key(0), (2048, 2048))
  f = jax.jit(lambda a: a @ a)
  jax.block_until_ready(f(a))
  start = time.perf_counter()
  for _ in range(10):
    jax.block_until_ready(f(a))
  return 2 * 2048**3 * 10 / (time.perf_counter() - start) / 1e9


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--only", default="")
  parser.add_argument("--timeout", type=int, default=600, help="seconds per case and implementation")
  parser.add_argument("--case", default="", help=argparse.SUPPRESS)  # internal: one measurement per process
  parser.add_argument("--impl", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.case:
    result = run_vqgen(args.case, args.repeats) if args.impl == "vqgen" else \
        run_peer(args.case, args.repeats, args.threads)
    print("RESULT " + json.dumps(result))
    return

  names = [n for n in CASES if not args.only or n in args.only.split(",")]
  try:
    import vector_quantize_pytorch  # pylint: disable=import-outside-toplevel,unused-import
    have_peer = True
  except ImportError:
    have_peer = False
    print("vector-quantize-pytorch not installed: measuring vqgen only (pip install -r requirements-bench.txt).")
  rate = matmul_gflops()
  out = os.path.join(ROOT, "benchmarks", "results", "quantizers")
  previous = {}
  if args.only and os.path.exists(out + ".json"):  # a partial re-run keeps the other cases' rows
    with open(out + ".json") as f:
      previous = {r["case"]: r for r in json.load(f)["rows"]}
  rows = []
  for name in names:
    row = {"case": name}
    for impl in (["vqgen", "peer"] if have_peer else ["vqgen"]):
      cmd = [sys.executable, __file__, "--case", name, "--impl", impl, "--repeats", str(args.repeats),
             "--threads", str(args.threads)]
      try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
      except subprocess.TimeoutExpired:
        row[impl] = {"error": f"timed out after {args.timeout} s"}
        continue
      lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
      row[impl] = json.loads(lines[-1][7:]) if lines else {"error": (proc.stderr or proc.stdout)[-300:]}
    _, _, dim, n = CASES[name]
    if name.startswith("vq_"):
      k = int(name.split("_")[1])
      row["matmul_bound_ms"] = 2 * n * k * dim / (rate * 1e9) * 1e3
      row["product_ms"] = product_ms(n, k, dim, args.repeats)
    rows.append(row)
    print(row, flush=True)
  measured = {r["case"] for r in rows}
  rows = [r for r in rows] + [r for c, r in previous.items() if c not in measured]
  rows.sort(key=lambda r: list(CASES).index(r["case"]))

  fmt = lambda r, key: (f"{r[key]:.1f}" if key in r else r.get("error", "")[:40].replace("\n", " ")) if r else "-"
  lines = [f"# Quantizer forward+backward on this CPU ({os.cpu_count()} cores, {platform.machine()})", "",
           f"N = {N} vectors unless named; median of {args.repeats}; peer with {args.threads} torch threads; "
           f"measured f32 matmul rate {rate:.0f} GFLOP/s. Command: `python benchmarks/quantizers.py`.", "",
           "| case | vqgen ms | peer ms | speed-up | vqgen MiB | peer MiB | matmul bound ms | product ms |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    v, p = r.get("vqgen", {}), r.get("peer", {})
    speed = f"{p['ms'] / v['ms']:.1f}x" if "ms" in v and "ms" in p else "-"
    bound, product = (f"{r[key]:.1f}" if key in r else "" for key in ("matmul_bound_ms", "product_ms"))
    lines.append(f"| {r['case']} | {fmt(v, 'ms')} | {fmt(p, 'ms')} | {speed} | {fmt(v, 'memory_mb')} | "
                 f"{fmt(p, 'memory_mb')} | {bound} | {product} |")
  write_results(out, "\n".join(lines), {"matmul_gflops": rate, "rows": rows})


if __name__ == "__main__":
  main()
