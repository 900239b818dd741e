"""The app's functions as the worker indexes them, once per test process.

``FunctionApp.get_functions()`` refuses a second call in one process (it
remembers the names it saw, as the worker calls it once), so tests that read
the app's metadata share this one indexing, in whatever order they run.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def app_functions() -> tuple[Any, ...]:
    """Every function of ``function_app.app`` (``azure.functions`` ``Function`` objects)."""
    import function_app

    app = function_app.app
    seen = app.functions_bindings
    try:
        return tuple(app.get_functions())
    finally:
        app.functions_bindings = seen  # index, then forget: the next caller may too
