"""A pipeline run as a subprocess, for tests that kill it like a lost machine::

    job = Job.start([sys.executable, "-m", "beam_pipelines.pageviews", ...], log=tmp / "run.log")
    try:
        job.wait_for(lambda: table_has_rows(), "the first window")
    finally:
        job.kill()   # SIGKILL to the whole process group: no cleanup runs
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Callable, Optional, Sequence, TypeVar, Union

from beam_pipelines.testing.polling import wait_for

__all__ = ["Job"]

T = TypeVar("T")


class Job:
    """A command in a session (process group) of its own, its output in ``log``."""

    def __init__(self, process: subprocess.Popen, handle: IO[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self._handle = handle

    @classmethod
    def start(cls, command: Sequence[str], *, log: Union[str, Path],
              cwd: Optional[Union[str, Path]] = None) -> Job:
        log = Path(log)
        handle = open(log, "wb")
        process = subprocess.Popen(list(command), cwd=cwd, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        return cls(process, handle, log)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_for(self, condition: Callable[[], T], what: str, timeout: float = 120.0) -> T:
        """``wait_for`` that fails at once if the job exits, with its log in the message."""

        def exited() -> Optional[str]:
            code = self.process.poll()
            return f"the job exited ({code})" if code is not None else None

        try:
            return wait_for(condition, timeout=timeout, what=what, interval=0.2, abort=exited)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None

    def kill(self) -> None:
        """SIGKILL the job's process group (no cleanup, like a lost machine) and reap it."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # exited meanwhile
        self.process.wait(timeout=30)
        self._handle.close()
