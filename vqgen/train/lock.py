"""One live run per workdir: an exclusive `fcntl.flock` on `<workdir>/vqgen.lock`, which records its holder.

The kernel releases the lock when the holding process ends, however it ends (kill -9, OOM, a lost session), so a
stale lock needs no clean-up: the next run takes it over and says whose it was. A second run started while the
first lives is refused with the holder's pid, host and start time (`RunInUse`); a cache (the classifier, the
perceptual network) waits for it instead. Locks are advisory and local to a file system that supports them (a
local disk, or NFS with lock support).
"""

import fcntl
import json
import logging
import os
import socket
import time

from vqgen.errors import RunInUse
from vqgen.train import writers

NAME = "vqgen.lock"


def _holder(fd: int) -> dict:
  os.lseek(fd, 0, os.SEEK_SET)
  try:
    holder = json.loads(os.read(fd, 4096).decode() or "{}")
  except (ValueError, UnicodeDecodeError):
    return {}
  return holder if isinstance(holder, dict) else {}


class WorkdirLock:
  """Held from `acquire()` until `release()` (or the process's end)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, NAME)
    self._fd = None

  def acquire(self, wait: bool = False) -> "WorkdirLock":
    """Takes the lock; raises RunInUse when another live process holds it (waits for it with `wait`)."""
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _holder(fd)
      who = (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')} (started "
             f"{holder.get('started', '?')})")
      if not wait:
        os.close(fd)
        raise RunInUse(f"{os.path.dirname(self.path)} is in use by {who}: one run at a time may train in a workdir. "
                       f"Wait for it to end, stop it, or choose another --workdir. (The lock is {self.path}; the "
                       "system releases it when its holder ends.)") from None
      writers.say(f"Waiting for {who}, which holds {self.path} ...")
      fcntl.flock(fd, fcntl.LOCK_EX)
    stale = _holder(fd)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if stale and (stale.get("pid"), stale.get("host")) != (me["pid"], me["host"]):
      logging.info("Took over %s from process %s on %s, which has ended.", self.path, stale.get("pid"),
                   stale.get("host"))
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(me).encode())
    self._fd = fd
    return self

  def release(self) -> None:
    """Unlocks (the file stays: removing it would race with a run about to lock it)."""
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire() if self._fd is None else self

  def __exit__(self, *exc):
    self.release()
