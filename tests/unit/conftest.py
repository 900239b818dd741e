"""Unit tests run without the local stack (``make test-fast`` selects ``not integration``).

A unit test that reaches Azurite or the Azure ML emulator after all, through any
fixture, is marked ``integration`` here, so the fast set never starts them.
"""

from __future__ import annotations

import pytest

STACK_FIXTURES = {"azurite", "emulator"}  # every other stack fixture builds on these


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
