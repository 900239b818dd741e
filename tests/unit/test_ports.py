"""free_port and wait_for_port against real loopback sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from local.ports import free_port, is_listening, wait_for_port


def test_free_port_can_be_bound() -> None:
    port = free_port()

    assert 1024 <= port <= 65535
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))  # Raises if the port was not actually free.


def test_wait_for_port_returns_once_listening() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        started = time.monotonic()
        wait_for_port("127.0.0.1", port, timeout=5)

        assert time.monotonic() - started < 1
        assert is_listening("127.0.0.1", port)


def test_wait_for_port_waits_for_a_late_listener() -> None:
    port = free_port()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def listen_later() -> None:
        time.sleep(0.3)
        server.bind(("127.0.0.1", port))
        server.listen()

    thread = threading.Thread(target=listen_later)
    thread.start()
    try:
        started = time.monotonic()
        wait_for_port("127.0.0.1", port, timeout=5)
        assert time.monotonic() - started >= 0.25
    finally:
        thread.join()
        server.close()


def test_wait_for_port_times_out_with_the_address_in_the_message() -> None:
    port = free_port()  # Released at once, so nothing listens there.

    started = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"127\.0\.0\.1:{port} within 0\.3 s"):
        wait_for_port("127.0.0.1", port, timeout=0.3)
    elapsed = time.monotonic() - started

    assert 0.3 <= elapsed < 2
    assert not is_listening("127.0.0.1", port)


def test_wait_for_port_rejects_negative_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        wait_for_port("127.0.0.1", free_port(), timeout=-1)


def test_the_short_wait_wrapper_covers_every_azure_ml_port_method() -> None:
    """A port method the wrapper does not define would bypass the short waits."""
    from shared.adapters.retry import ShortWaitRetries
    from shared.domain.azureml import AzureML

    port = {name for name in vars(AzureML) if not name.startswith("_")}
    assert port <= set(vars(ShortWaitRetries)), port - set(vars(ShortWaitRetries))
