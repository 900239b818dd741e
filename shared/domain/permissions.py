"""Which Azure roles the app's identity needs, and where: one table for code and template.

The app runs as one user-assigned managed identity. Every call it makes is
authorised by a built-in role assigned on a scope; this table is the single
place that says which. Two readers use it:

- the adapters, to turn a 403 into one actionable error ("assign role R on
  scope S to identity I") instead of a bare ``AuthorizationFailed``;
- the template check (``tests/infra``), which fails when ``infra/`` stops
  assigning a role listed here.

Pure data, no Azure imports. GUIDs are Azure's built-in role definition ids
(the same in every tenant).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """Where a role is assigned, named for what the app uses there."""

    WORKSPACE = "the Azure ML workspace"
    HOST_STORAGE = "the app's storage account (AzureWebJobsStorage: host, run ledger)"
    DATASET_STORAGE = "the dataset storage account (DATASET_STORAGE)"
    EVENTS_TOPIC = "the lifecycle events topic (EVENTS_TOPIC_ENDPOINT)"
    APP_INSIGHTS = "the Application Insights resource"


@dataclass(frozen=True)
class Role:
    name: str
    guid: str


AZUREML_DATA_SCIENTIST = Role("AzureML Data Scientist", "f6c7c914-8db3-469d-8ca1-694a8f32e121")
STORAGE_BLOB_DATA_OWNER = Role("Storage Blob Data Owner", "b7e6dc6d-f1e8-4753-8033-0f276bb0955b")
STORAGE_BLOB_DATA_READER = Role("Storage Blob Data Reader", "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1")
STORAGE_QUEUE_DATA_CONTRIBUTOR = Role(
    "Storage Queue Data Contributor", "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
)
STORAGE_TABLE_DATA_CONTRIBUTOR = Role(
    "Storage Table Data Contributor", "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
)
EVENTGRID_DATA_SENDER = Role("EventGrid Data Sender", "d5a91429-5739-47e2-a06b-3470a27159e7")
MONITORING_METRICS_PUBLISHER = Role(
    "Monitoring Metrics Publisher", "3913510d-42f4-4e42-8a64-420c390055eb"
)

# What the app's own identity needs, scope by scope (why in the comments).
APP_ROLES: dict[Scope, tuple[Role, ...]] = {
    # data assets, fine-tuning jobs, models, online endpoints/deployments, listKeys
    Scope.WORKSPACE: (AZUREML_DATA_SCIENTIST,),
    # host storage, timer locks, the Flex deployment package; blob-trigger queues;
    # the run ledger table
    Scope.HOST_STORAGE: (
        STORAGE_BLOB_DATA_OWNER,
        STORAGE_QUEUE_DATA_CONTRIBUTOR,
        STORAGE_TABLE_DATA_CONTRIBUTOR,
    ),
    # the blob trigger's connection (blobs + its queues); reports and splits
    Scope.DATASET_STORAGE: (STORAGE_BLOB_DATA_OWNER, STORAGE_QUEUE_DATA_CONTRIBUTOR),
    Scope.EVENTS_TOPIC: (EVENTGRID_DATA_SENDER,),
    # telemetry with Entra authentication (no instrumentation key)
    Scope.APP_INSIGHTS: (MONITORING_METRICS_PUBLISHER,),
}

# What the training job's identities (the workspace's and the compute's) need:
# the job reads the data assets in place, from the dataset account.
TRAINING_ROLES: dict[Scope, tuple[Role, ...]] = {
    Scope.DATASET_STORAGE: (STORAGE_BLOB_DATA_READER,),
}

# Resource-provider namespace of a denied action -> (scope, role) to assign.
_BY_PROVIDER: dict[str, tuple[Scope, Role]] = {
    "microsoft.machinelearningservices": (Scope.WORKSPACE, AZUREML_DATA_SCIENTIST),
    "microsoft.eventgrid": (Scope.EVENTS_TOPIC, EVENTGRID_DATA_SENDER),
}


def role_for_action(action: str) -> tuple[Scope, Role] | None:
    """The scope and role that grant ``action`` (e.g. ``Microsoft.MachineLearningServices/...``)."""
    provider = action.split("/", 1)[0].strip().lower()
    return _BY_PROVIDER.get(provider)
