"""TFDS's split slicing for the local sources: `train[:512]`, `test[100:200]`, `train[:10%]`, `train[-1000:]`.

TFDS datasets slice themselves (`tfds.data_source(name, split="train[:10%]")`); Fashion-MNIST and synthetic images
go through `sliced` so that the same split strings work everywhere: a debugging subset, a held-out slice, or the
small code sets of the tests.
"""

import re

from vqgen.errors import Refusal

_SLICE = re.compile(r"^(?P<name>[\w-]+)\[(?P<start>-?\d*)(?P<start_pct>%?):(?P<stop>-?\d*)(?P<stop_pct>%?)\]$")


def parse_split(split: str) -> tuple[str, slice | None]:
  """'train[10:20%]' -> ('train', the slice as written, percentages as ('pct', n)); 'train' -> ('train', None)."""
  if "[" not in split:
    return split, None
  m = _SLICE.match(split)
  if not m:
    raise Refusal(f"Split {split!r}: expected NAME or NAME[START:STOP] with integers or percentages, e.g. "
                     "'train[:512]', 'test[100:200]', 'train[:10%]' (TFDS's slicing syntax).")
  bound = lambda v, pct: None if v in ("", "-") else (("pct", int(v)) if pct else int(v))
  return m["name"], slice(bound(m["start"], m["start_pct"]), bound(m["stop"], m["stop_pct"]))


def _index(bound, n: int) -> int | None:
  if isinstance(bound, tuple):  # a percentage, rounded as TFDS rounds (to the closest record)
    return round(n * bound[1] / 100)
  return bound


class SlicedSource:
  """Records [start, stop) of a random-access source, in order."""

  def __init__(self, source, window: slice, split: str):
    n = len(source)
    self.source, self.split = source, split
    self.range = range(n)[slice(_index(window.start, n), _index(window.stop, n))]
    if not self.range:
      raise Refusal(f"Split {split!r} selects no record of the {n} in {source!r}.")

  def __len__(self) -> int:
    return len(self.range)

  def __getitem__(self, index: int) -> dict:
    return self.source[self.range[index]]

  def __repr__(self):
    return f"{self.source!r}[{self.range.start}:{self.range.stop}]"


def sliced(make, split: str):
  """`make(base_split)`, sliced as `split` says."""
  name, window = parse_split(split)
  source = make(name)
  return source if window is None else SlicedSource(source, window, split)
