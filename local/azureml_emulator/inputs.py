"""Job inputs: which data references a fine-tuning job accepts, and where "training" reads.

Azure ML takes a job's ``trainingData``/``validationData`` as a data-asset
reference (``azureml:name:version`` or its ARM id) or as a URI: a datastore
path ``azureml://datastores/<ds>/paths/<p>`` (recorded for MaaP fine-tuning),
``https://`` and ``wasbs://``/``abfss://`` storage paths (documented for job
inputs). Submission accepts all of them; a data asset that does not exist is
404, anything else is 400.

Reading happens when the job runs, in its data-import step:

- ``https://`` blob URLs are read with the storage account key (Azurite);
- a datastore path is read from the blob container its datastore is mapped to
  (``POST /_emulator/datastores``), e.g. ``workspaceblobstore`` -> an Azurite
  container URL;
- an unmapped datastore, ``wasbs://`` and ``abfss://`` are not read: the job
  still completes and its stand-in model answers with a note saying it
  learned nothing (``standin.untrained``). The emulator has no identity-based
  storage access to rehearse, and never reaches out to real Azure storage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from local.azureml_emulator.arm import ArmError, bad_request
from local.azureml_emulator.state import World
from local.azureml_emulator.workspace import parse_asset_ref

DATASTORE_URI = re.compile(
    r"^azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/workspaces/[^/]+/)?"
    r"datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)$",
    re.IGNORECASE,
)
STORAGE_URI = re.compile(r"^(?:wasbs?|abfss?)://[^@/]+@[^/]+(?:/.*)?$", re.IGNORECASE)
HTTP_URI = re.compile(r"^https?://[^/]+/.+$", re.IGNORECASE)


@dataclass(frozen=True)
class Source:
    """Where a job's training data is read from: a blob URL, or why nowhere.

    ``unread`` says why the emulator will not read data Azure would (the job
    still completes, untrained); ``missing`` why the data cannot exist any
    more (the data import fails).
    """

    url: str = ""
    unread: str = ""
    missing: str = ""


def check(world: World, ws_key: str, uri: str, field: str) -> None:
    """Refuse an input Azure would refuse at submission; call with ``world.lock`` held."""
    if DATASTORE_URI.match(uri) or STORAGE_URI.match(uri) or HTTP_URI.match(uri):
        return
    ref = parse_asset_ref(uri)
    if ref is None:
        raise bad_request(
            f"{field} '{uri}' is neither a data asset reference nor a supported URI "
            "(azureml://datastores/<ds>/paths/<p>, https://, wasbs://, abfss://).",
            code="UserError",
        )
    if (ws_key, ref[0].lower(), ref[1]) not in world.data:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"{field} refers to data asset {ref[0]}:{ref[1]}, which does not exist.",
        )


def source(world: World, ws_key: str, uri: str) -> Source:
    """Where to read ``uri`` from when the job runs; call with ``world.lock`` held."""
    ref = parse_asset_ref(uri)
    if ref is not None:
        asset = world.data.get((ws_key, ref[0].lower(), ref[1]))
        if asset is None:
            return Source(missing=f"the data asset {ref[0]}:{ref[1]} no longer exists")
        uri = str(asset.properties["dataUri"])
    found = DATASTORE_URI.match(uri)
    if found is not None:
        container = world.datastores.get(found.group("datastore").lower())
        if container is None:
            return Source(
                unread=f"datastore '{found.group('datastore')}' is not mapped to a "
                "container in the emulator, so the data was not read"
            )
        return Source(url=f"{container.rstrip('/')}/{found.group('path').lstrip('/')}")
    if STORAGE_URI.match(uri):
        return Source(unread=f"the emulator does not read {uri.split(':', 1)[0]}:// paths")
    return Source(url=uri)
