"""The emulator as one object: bind, serve, tick, stop.

``AzureMLEmulator`` owns the HTTPS server thread and the lifecycle ticker.
``client_env()`` is what a client process needs to reach it with the real
``azure-ai-ml`` SDK: ``AZUREML_DEV_URL_MFE`` (the SDK's own base-URL override)
and ``REQUESTS_CA_BUNDLE`` (the system CAs plus the emulator's certificate).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType

import certifi

from local.azureml_emulator import tls
from local.azureml_emulator.admin import AdminRoutes
from local.azureml_emulator.events import EventSink
from local.azureml_emulator.faults import Faults
from local.azureml_emulator.history import HistoryRoutes  # run history (history.py)
from local.azureml_emulator.http import Dispatcher, Router, TlsServer, make_server
from local.azureml_emulator.identity import TOKEN_PATH, IdentityRoutes
from local.azureml_emulator.jobs import JobRoutes
from local.azureml_emulator.online import OnlineRoutes
from local.azureml_emulator.operations import OperationRoutes
from local.azureml_emulator.pipeline import Pipeline
from local.azureml_emulator.rbac import Rbac
from local.azureml_emulator.requestlog import RequestLog
from local.azureml_emulator.scoring import ScoringRoutes
from local.azureml_emulator.standin import StandInModel, read_blob_lines
from local.azureml_emulator.state import Clock, World
from local.azureml_emulator.topic import TOPIC_PATH, TopicRoutes
from local.azureml_emulator.workspace import WorkspaceRoutes

log = logging.getLogger("azureml_emulator")

# Azurite's published development account key (not a secret): the default
# credential the emulator uses to read training data from blob storage.
AZURITE_ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
TICK_SECONDS = 0.05


class AzureMLEmulator:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        storage_account_key: str = AZURITE_ACCOUNT_KEY,
        webhook_url: str | None = None,
        workdir: Path | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="azureml-emulator-"))
        self.clock = Clock(speed)
        self.world = World(self.clock)
        self.faults = Faults()
        self.events = EventSink(self.clock, webhook_url)
        self._storage_key = storage_account_key
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

        files = tls.generate(self.workdir / "tls")
        self.cert_file = files.cert
        self.ca_bundle = self.workdir / "tls" / "ca-bundle.pem"
        self.ca_bundle.write_text(Path(certifi.where()).read_text() + "\n" + files.cert.read_text())
        router = Router()
        # Who calls (tokens from the identity stand-in) and what they may not do.
        self.rbac = Rbac()
        # Every non-admin request with its times (GET /_emulator/requests).
        self.request_log = RequestLog()
        dispatcher = Dispatcher(
            router,
            self.faults.on_request,
            self.rbac.authorize,
            self.faults.on_response,
            self.request_log,
        )
        self._server: TlsServer = make_server(
            host, port, dispatcher, str(files.cert), str(files.key)
        )
        self.port = int(self._server.server_address[1])
        self.base_url = f"https://{host}:{self.port}"

        self.identity = IdentityRoutes(self.rbac)
        # The app's own lifecycle events: an Event Grid custom topic stand-in.
        self.topic = TopicRoutes()
        models: dict[str, StandInModel] = {}
        pipeline = Pipeline(self.world, self.events, self._read_data, models)
        self.jobs = JobRoutes(self.world, self.faults, pipeline, self.base_url)
        self.online = OnlineRoutes(self.world, self.base_url, self.faults.deployment_fault)
        for routes in (
            WorkspaceRoutes(self.world),
            OperationRoutes(self.world),
            self.jobs,
            HistoryRoutes(self.world),  # run history: runs, child steps, errors (history.py)
            self.online,
            ScoringRoutes(self.world, models, self.faults.scoring_behaviour),
            AdminRoutes(
                self.world,
                self.faults,
                self.events,
                self.rbac,
                self.jobs.describe,
                on_clear_faults=(self.topic.clear_faults,),
                request_log=self.request_log,
            ),
            self.identity,
            self.topic,
        ):
            routes.register(router)

    def _read_data(self, uri: str) -> list[bytes]:
        return read_blob_lines(uri, self._storage_key)

    def client_env(self) -> dict[str, str]:
        """Environment variables that point the real azure-ai-ml SDK here."""
        return {"AZUREML_DEV_URL_MFE": self.base_url, "REQUESTS_CA_BUNDLE": str(self.ca_bundle)}

    @property
    def topic_endpoint(self) -> str:
        """The Event Grid topic stand-in, for ``EventGridPublisherClient(endpoint, ...)``."""
        return f"{self.base_url}{TOPIC_PATH}"

    @property
    def topic_key(self) -> str:
        """The topic's access key (``aeg-sas-key``), generated when the emulator starts."""
        return self.topic.key

    def identity_env(self) -> dict[str, str]:
        """Environment variables of a managed identity served by the emulator.

        With these set, ``DefaultAzureCredential`` gets its tokens here, the way
        it gets them from the platform on a Function App.
        """
        return {
            "IDENTITY_ENDPOINT": f"{self.base_url}{TOKEN_PATH}",
            "IDENTITY_HEADER": self.identity.secret,
        }

    def start(self) -> AzureMLEmulator:
        serve = threading.Thread(target=self._server.serve_forever, daemon=True, name="https")
        tick = threading.Thread(target=self._tick_forever, daemon=True, name="ticker")
        self._threads = [serve, tick]
        for thread in self._threads:
            thread.start()
        log.info("Azure ML emulator listening on %s", self.base_url)
        return self

    def _tick_forever(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self.jobs.advance()
                self.online.advance()
            except Exception:  # keep ticking: one bad resource must not stop the clock
                log.exception("emulator tick failed")

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self.events.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> AzureMLEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
