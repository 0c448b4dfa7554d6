"""Why VQ's nearest-code search is not at the matmul bound on XLA:CPU: the same [N, d] x [d, K] distance product
reduced in the ways one could write it, timed in one process.

  python benchmarks/argmin_forms.py [--ks 1024,16384] [--repeats 9]

Rows: the product alone (materialised), a row-wise min over it (XLA fuses this reduction into the dot), argmin
(the index-carrying reduction, not fused), a masked-iota min after the fused min, block minima then an argmin
inside each row's winning block, and vqgen's search over blocks of 256 codes with a running (min, index)
(quantizers/assignment.py). Every index form is checked against argmin. Writes
benchmarks/results/argmin_forms.{md,json}.
"""

import argparse
import os
import platform
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.common import median_ms, write_results  # noqa: E402
from vqgen.quantizers.assignment import nearest_indices  # noqa: E402

N, D = 8192, 64


def forms(k: int) -> dict:
  """name -> (jitted fn of (x, c, cn), returns indices?)."""
  scores = lambda x, c, cn: cn[None] - 2.0 * x @ c.T
  block = 8

  def masked_iota(x, c, cn):
    m = jnp.min(scores(x, c, cn), -1, keepdims=True)
    iota = jnp.arange(k, dtype=jnp.float32)[None]
    return jnp.min(jnp.where(scores(x, c, cn) <= m, iota, float(k)), -1).astype(jnp.int32)

  def winning_block(x, c, cn):
    blocks = jnp.argmin(jnp.min(scores(x, c, cn).reshape(N, k // block, block), -1), -1)
    local = cn.reshape(-1, block)[blocks] - 2.0 * jnp.einsum("nd,nbd->nb", x, c.reshape(-1, block, D)[blocks])
    return (blocks * block + jnp.argmin(local, -1)).astype(jnp.int32)

  return {
      "product alone": (lambda x, c, cn: x @ c.T, False),
      "row min (fused into the dot)": (lambda x, c, cn: jnp.min(scores(x, c, cn), -1), False),
      "argmin": (lambda x, c, cn: jnp.argmin(scores(x, c, cn), -1).astype(jnp.int32), True),
      "fused min, then masked-iota min": (masked_iota, True),
      f"block-{block} minima, argmin in the winning block": (winning_block, True),
      "vqgen: blocks of 256 codes, running (min, index)": (lambda x, c, cn: nearest_indices(x, c, 256), True),
  }


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--ks", default="1024,16384")
  parser.add_argument("--repeats", type=int, default=9)
  args = parser.parse_args()
  a = jax.random.normal(jax.random.key(0), (2048, 2048))
  rate = 2 * 2048**3 / median_ms(jax.jit(lambda a: a @ a), (a,), args.repeats) / 1e6
  rows = []
  for k in (int(v) for v in args.ks.split(",")):
    x, c = jax.random.normal(jax.random.key(0), (N, D)), jax.random.normal(jax.random.key(1), (k, D))
    cn = jnp.sum(c * c, -1)
    reference = jnp.argmin(cn[None] - 2.0 * x @ c.T, -1)
    for name, (fn, gives_index) in forms(k).items():
      jitted = jax.jit(fn)
      row = {"K": k, "form": name, "ms": median_ms(jitted, (x, c, cn), args.repeats),
             "bound_ms": 2 * N * k * D / (rate * 1e9) * 1e3}
      if gives_index:
        row["agrees"] = float(jnp.mean(jitted(x, c, cn) == reference))
      rows.append(row)
      print(row, flush=True)
  lines = [f"# Reductions of the VQ distance product on this CPU ({os.cpu_count()} cores, {platform.machine()})", "",
           f"N = {N}, d = {D}; median of {args.repeats}; square float32 matmul {rate:.0f} GFLOP/s, so the bound "
           "(2 N K d FLOPs at that rate) is the last column. Command: `python benchmarks/argmin_forms.py`.", "",
           "| K | form | ms | x bound | index agrees with argmin | bound ms |", "|---:|---|---:|---:|---:|---:|"]
  for r in rows:
    agree = f"{r['agrees']:.1%}" if "agrees" in r else ""
    lines.append(f"| {r['K']} | {r['form']} | {r['ms']:.1f} | {r['ms'] / r['bound_ms']:.1f}x | {agree} | "
                 f"{r['bound_ms']:.1f} |")
  write_results(os.path.join(ROOT, "benchmarks", "results", "argmin_forms"), "\n".join(lines),
                {"matmul_gflops": rate, "rows": rows})


if __name__ == "__main__":
  main()
