"""A local stand-in's child process: started, waited on until ready, stopped.

Shared by ``local.azurite`` (Azurite, a Node.js process) and
``local.functions_host.process`` (the Functions host, a Python process); each
says how it knows its child is ready and words its own errors.

* ``ChildProcess.start`` runs the command in a session (process group) of its
  own, so a terminal's Ctrl-C reaches only us and we stop the child in order,
  and so that stopping can signal everything the child spawned. Its stdin is
  closed and its stdout and stderr go to one log file, truncated (or appended
  to, after a banner line) at each start.
* ``wait_ready`` polls a readiness probe until it answers True, and raises
  ``ChildExited`` if the child exits first or ``ChildNotReady`` once the
  timeout has passed.
* ``stop`` asks politely (SIGTERM), waits, then SIGKILLs the whole group; it is
  idempotent. ``kill`` is a crash: SIGKILL for the group at once.

``StartStop`` gives a launcher its ``with`` form: started on entry, stopped on
the way out however the block ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

TAIL_BYTES = 64 * 1024  # the most of a log's end that ``log_tail`` reads by default


class ChildExited(RuntimeError):
    """The child exited while it was awaited."""

    def __init__(self, returncode: int) -> None:
        super().__init__(f"the child process exited with code {returncode}")
        self.returncode = returncode


class ChildNotReady(TimeoutError):
    """The readiness probe did not answer True within the timeout."""


class ChildProcess:
    """One started child process, leader of its own process group."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(
        cls,
        command: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        append: bool = False,
    ) -> ChildProcess:
        """Run ``command`` with its output in ``log_path`` (appended to after a
        ``--- starting: ...`` line if ``append``, else truncated)."""
        with log_path.open("ab" if append else "wb") as log:
            if append:
                log.write(f"--- starting: {' '.join(command)}\n".encode())
                log.flush()
            process = subprocess.Popen(
                list(command),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(process)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the child has exited (as far as last polled), else None."""
        return self.process.returncode

    def poll(self) -> int | None:
        """The exit code if the child has exited, else None."""
        return self.process.poll()

    def wait(self) -> int:
        """Block until the child exits on its own; its exit code."""
        return self.process.wait()

    def wait_ready(self, ready: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
        """Call ``ready`` every ``interval`` seconds until it answers True.

        Raises ``ChildExited`` as soon as the child has exited (checked on every
        round, so a crash fails at once instead of after the timeout) and
        ``ChildNotReady`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if ready():
                return
            code = self.process.poll()
            if code is not None:
                raise ChildExited(code)
            if time.monotonic() >= deadline:
                raise ChildNotReady(f"not ready within {timeout:g} s")
            time.sleep(interval)

    def stop(self, timeout: float, *, group: bool = True) -> int:
        """Stop the child: SIGTERM, up to ``timeout`` s to exit, then SIGKILL for its
        whole group. ``group``: the SIGTERM goes to the whole group too, and the group
        is swept with SIGKILL once the leader is gone; otherwise only the leader is
        asked (it stops what it started itself). Returns the exit code."""
        process = self.process
        if process.poll() is None:
            if group:
                signal_group(process.pid, signal.SIGTERM)
            else:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                signal_group(process.pid, signal.SIGKILL)
                process.wait()
        if group:
            # Sweep anything left in the group after the leader is gone.
            signal_group(process.pid, signal.SIGKILL)
        return process.returncode

    def kill(self) -> int:
        """SIGKILL the child and everything it started, as a crash would; the exit code."""
        signal_group(self.process.pid, signal.SIGKILL)
        return self.process.wait()


class StartStop:
    """``with launcher:`` calls ``start()`` on entry and always ``stop()`` on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``pgid``; a group that is gone already is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def log_tail(path: Path, lines: int, max_bytes: int | None = TAIL_BYTES) -> str:
    """The last ``lines`` lines of the log at ``path`` (reading at most its last
    ``max_bytes``, or all of it with None), or "" if it cannot be read."""
    try:
        with path.open("rb") as log:
            if max_bytes is not None:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - max_bytes))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
