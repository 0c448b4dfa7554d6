"""`python -m vqgen.demo`: the same as `python -m vqgen.cli.demo` (see there)."""

from vqgen.cli.demo import cli

if __name__ == "__main__":
  cli()
