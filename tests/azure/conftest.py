"""Live tests against a deployed finetune-autopilot (``make test-azure``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "azure: live end-to-end against a real Azure deployment (make test-azure)"
    )
