"""`python -m vqgen.evaluate`: the same as `python -m vqgen.cli.evaluate` (see there)."""

from vqgen.cli.evaluate import cli

if __name__ == "__main__":
  cli()
