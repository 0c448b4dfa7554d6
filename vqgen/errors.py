"""The error a command prints alone: a refusal whose message names what is wrong and how to fix it.

Every part of vqgen may raise it (it imports nothing); `vqgen.cli.console` turns it into one line on the console
and exit status 2. A refusal changes nothing on disk: it is raised before the first write, or instead of one.
"""


class Refusal(ValueError):
  """A run, file or setting that cannot be used as it is. The message is complete: cause, the paths, the fix."""


class RunInUse(Refusal):
  """A workdir another live process is training in (its lock names the holder)."""


class IncompatibleCheckpoint(Refusal):
  """A readable, verified checkpoint that does not fit the model being restored (another config)."""


class SaveFailed(Refusal):
  """A checkpoint that could not be written (disk full, permissions): training stops at the first failed save."""


class Interrupted(Refusal):
  """A run stopped by SIGINT or SIGTERM after saving its current step."""


class MissingInput(Refusal, FileNotFoundError):
  """A file or folder a command needs (data, weights, a run) that is not there; still a FileNotFoundError."""
