"""A worker plugin for tests/batch: kills its worker process once, right after a partition is scored.

Importable by the workers (they unpickle the plugin by reference to this module).
"""

from __future__ import annotations

import os

from distributed import WorkerPlugin


class KillOnce(WorkerPlugin):
    """Exit the worker process (as a crash would: no clean-up) the first time a task whose key
    starts with `prefix` finishes on any worker; `marker` (a file created exclusively) makes it once."""

    name = "tpas-kill-once"

    def __init__(self, marker: str, prefix: str = "tpas-scores-"):
        self.marker = marker
        self.prefix = prefix

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish != "memory" or not str(key).startswith(self.prefix):
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os._exit(17)  # the task's output file is written; its result never reaches the scheduler
