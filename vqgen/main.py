"""`python -m vqgen.main`: the same as `python -m vqgen.cli.main` (see there)."""

from vqgen.cli.main import cli

if __name__ == "__main__":
  cli()
