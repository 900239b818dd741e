"""The app wired to the local stack: settings, and ``Services`` built from them.

Tests build the app exactly as a Function App would (``shared.composition.build``
from an environment of app settings), pointed at Azurite and the emulator.
Each ``LocalApp`` gets its own dataset and work containers and ledger table so
tests do not see each other's runs. The work container is left for the app to
create on its first write, as it does on a fresh stack.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

from local.azurite import Azurite
from shared.composition import build
from shared.domain.ports import Services

BASE_MODEL = "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19"


def app_settings(azurite: Azurite, **overrides: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    settings = {
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-00000000c0de",
        "AZURE_RESOURCE_GROUP": "rg-finetune-app",
        # A workspace of its own, so equal datasets in two tests don't share a job.
        "AZUREML_WORKSPACE": f"mlw-{suffix}",
        "FINETUNE_BASE_MODEL": BASE_MODEL,
        "FINETUNE_INSTANCE_TYPES": "Standard_NC24ads_A100_v4",
        "DATASET_STORAGE": azurite.connection_string,
        "AzureWebJobsStorage": azurite.connection_string,
        "DATASET_CONTAINER": f"datasets-{suffix}",
        "WORK_CONTAINER": f"work-{suffix}",
        "RUN_TABLE": f"runs{suffix}",
        "MIN_EXAMPLES": "10",
        # Test datasets hold a few held-out examples, not the 20 a champion/challenger
        # comparison needs by default; tests of the gate itself set their own.
        "EVAL_MIN_EXAMPLES": "1",
    }
    settings.update(overrides)
    return settings


@dataclass
class LocalApp:
    settings: dict[str, str]
    services: Services
    container: ContainerClient  # the dataset container
    work: ContainerClient  # the app's own

    @classmethod
    def create(cls, azurite: Azurite, **overrides: str) -> LocalApp:
        settings = app_settings(azurite, **overrides)
        blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
        container = blobs.create_container(settings["DATASET_CONTAINER"])
        work = blobs.get_container_client(settings["WORK_CONTAINER"])
        return cls(settings, build(settings), container, work)

    def upload(self, name: str, data: bytes, **metadata: str) -> BlobClient:
        client = self.container.get_blob_client(name)
        client.upload_blob(data, overwrite=True, metadata=metadata or None)
        return client


def jsonl(records: Iterable[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def text_examples(count: int, topic: str = "meeting") -> list[dict[str, str]]:
    names = ["Edward", "Rachel", "Priya", "Tomas", "Ines", "Kofi", "Mei", "Lars"]
    examples = []
    for i in range(count):
        a, b = names[i % len(names)], names[(i + 3) % len(names)]
        hour = 1 + i % 11
        examples.append(
            {
                "prompt": (
                    f"Summarize the dialog.\n<dialog>: {a}: {b}, when is the {topic} #{i}?\n"
                    f"{b}: At {hour}pm.\n{a}: Ok, see you then\n<summary>: "
                ),
                "completion": f"{a} and {b} will meet for the {topic} #{i} at {hour}pm.",
            }
        )
    return examples


def chat_examples(count: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "system", "content": "You summarise dialogs in one sentence."},
                {"role": "user", "content": f"Ana: Lunch at noon #{i}? Ben: Sure."},
                {"role": "assistant", "content": f"Ana and Ben will have lunch #{i} at noon."},
            ]
        }
        for i in range(count)
    ]
