"""Loopback TCP port helpers for starting local services on free ports."""

from __future__ import annotations

import socket
import time

# Pause between connection attempts: short enough that waiting adds little latency,
# long enough not to spin a core while a service boots.
_POLL_INTERVAL_S = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The port is found by binding to port 0 and releasing it, so another process can
    grab it before the caller binds it; callers that must not fail should be ready to
    retry with a fresh port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def is_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Return True if a TCP connection to ``host:port`` succeeds within ``timeout`` s.

    The connection is closed straight away; nothing is sent.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until ``host:port`` accepts TCP connections.

    Polls until a connection succeeds or ``timeout`` seconds have passed, then raises
    TimeoutError naming the address. It only proves that *something* listens there,
    not which process.
    """
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout!r}")
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if is_listening(host, port, timeout=max(0.01, min(remaining, 1.0))):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"nothing accepted TCP connections on {host}:{port} within {timeout:g} s"
            )
        time.sleep(min(_POLL_INTERVAL_S, max(0.0, deadline - time.monotonic())))
