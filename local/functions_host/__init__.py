"""A local stand-in for the Azure Functions host (Core Tools' ``func start``).

Loads ``function_app.py`` (Python v2 programming model) and drives its functions
from the app's own metadata (``app.get_functions()`` and each function's bindings):
HTTP routes with key auth, blob triggers by container scan with durable receipts
and a poison queue, NCRONTAB timers, Event Grid deliveries on the host's webhook.

* ``python -m local.functions_host`` runs it in the foreground (see ``__main__``).
* ``FunctionsHost`` runs it as a child process, for tests and scripts.
* ``HostRuntime`` is the host itself, in this process (one per process).
"""

from local.functions_host.config import HostStartError
from local.functions_host.process import FunctionsHost
from local.functions_host.runtime import HostOptions, HostRuntime

__all__ = ["FunctionsHost", "HostOptions", "HostRuntime", "HostStartError"]
