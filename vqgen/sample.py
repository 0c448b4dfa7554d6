"""`python -m vqgen.sample`: the same as `python -m vqgen.cli.sample` (see there)."""

from vqgen.cli.sample import cli

if __name__ == "__main__":
  cli()
