"""What the benchmark scripts share: a median timing of a jitted call, and writing a results table."""

import json
import time


def median_ms(fn, args: tuple, repeats: int) -> float:
  """Median wall time in ms of `fn(*args)` over `repeats` calls, after one warm-up call (the compile)."""
  import jax  # pylint: disable=import-outside-toplevel  (scripts import JAX after setting up their processes)
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * sorted(times)[len(times) // 2]


def write_results(out: str, table: str, payload: dict) -> None:
  """Prints the markdown table and writes it to out.md, and the payload to out.json."""
  print(table)
  with open(out + ".md", "w") as f:
    f.write(table + "\n")
  with open(out + ".json", "w") as f:
    json.dump(payload, f, indent=2)
