"""Settings: read lazily, every problem named at once."""

from __future__ import annotations

import pytest

from shared.domain.errors import SettingsError
from shared.domain.settings import ENDPOINT, default_endpoint_name, load_settings

GOOD = {
    "AZURE_SUBSCRIPTION_ID": "sub",
    "AZURE_RESOURCE_GROUP": "rg",
    "AZUREML_WORKSPACE": "ws",
    "FINETUNE_BASE_MODEL": "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19",
    "FINETUNE_COMPUTE": "gpu-cluster",
}


def test_defaults_fill_everything_optional() -> None:
    settings = load_settings(GOOD)
    assert settings.task == "auto"
    assert settings.dataset_container == "datasets"
    assert settings.validation_fraction == 0.1
    assert settings.hyperparameters["num_train_epochs"] == "1"


def test_every_problem_is_named_in_one_error() -> None:
    bad = {
        "FINETUNE_BASE_MODEL": "mistral-7b",
        "FINETUNE_TASK": "images",
        "VALIDATION_FRACTION": "0.9",
        "MIN_EXAMPLES": "ten",
        "DATASET_CONTAINER": "Bad_Name",
        "FINETUNE_HYPERPARAMETERS": '{"learning_rate": "fast", "dropout_everything": "1"}',
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(bad)
    message = str(caught.value)
    for name in (
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "AZUREML_WORKSPACE",
        "FINETUNE_BASE_MODEL='mistral-7b'",
        "azureml://registries/",
        "FINETUNE_TASK",
        "VALIDATION_FRACTION",
        "MIN_EXAMPLES",
        "DATASET_CONTAINER",
        "FINETUNE_COMPUTE or FINETUNE_INSTANCE_TYPES",
        "'learning_rate' must be",
        "'dropout_everything' is not an allowed hyperparameter",
    ):
        assert name in message
    assert len(caught.value.problems) == 11


def test_hyperparameters_are_normalised() -> None:
    settings = load_settings(
        {**GOOD, "FINETUNE_HYPERPARAMETERS": '{"num_train_epochs": " 2 ", "learning_rate": 2e-5}'}
    )
    assert dict(settings.hyperparameters) == {"num_train_epochs": "2", "learning_rate": "2e-05"}


def test_instance_types_are_a_comma_list() -> None:
    env = {k: v for k, v in GOOD.items() if k != "FINETUNE_COMPUTE"}
    settings = load_settings({**env, "FINETUNE_INSTANCE_TYPES": "A, B ,"})
    assert settings.instance_types == ("A", "B") and settings.compute is None


def test_the_default_endpoint_name_is_unique_per_workspace_and_valid() -> None:
    name = load_settings(GOOD).endpoint_name
    assert name == default_endpoint_name("sub", "rg", "ws") and name.startswith("ft-ws-")
    other = load_settings({**GOOD, "AZURE_RESOURCE_GROUP": "rg2"}).endpoint_name
    assert other != name  # another deployment of the app in the region gets another name
    long = default_endpoint_name("s", "r", "My_Very.Long Workspace Name For Fine Tuning")
    assert ENDPOINT.match(long) and len(long) <= 32
    assert ENDPOINT.match(default_endpoint_name("s", "r", "___"))
    assert load_settings({**GOOD, "ENDPOINT_NAME": "mine"}).endpoint_name == "mine"


def test_the_scoring_route_takes_the_mlflow_score_shape_too() -> None:
    assert load_settings({**GOOD, "SMOKE_ROUTE": "/score"}).smoke_route == "/score"
    with pytest.raises(SettingsError, match=r"SMOKE_ROUTE='/predict' is invalid.*MLflow"):
        load_settings({**GOOD, "SMOKE_ROUTE": "/predict"})


def test_deadlines_of_the_waiting_states() -> None:
    settings = load_settings(GOOD)
    assert settings.training_deadline_hours == 72 and settings.deploy_deadline_minutes == 180
    custom = load_settings({**GOOD, "DEPLOY_DEADLINE_MINUTES": "45"})
    assert custom.deploy_deadline_minutes == 45
    with pytest.raises(SettingsError, match="TRAINING_DEADLINE_HOURS"):
        load_settings({**GOOD, "TRAINING_DEADLINE_HOURS": "0"})
