"""A local Azure ML emulator that the real ``azure-ai-ml`` client talks to over HTTPS.

It serves the subset of the Azure Resource Manager API this project uses (data
assets, fine-tuning jobs, models, online endpoints and deployments), simulates
their lifecycles on an adjustable clock, scores requests with a stand-in model
derived from the training data, emits Azure ML Event Grid events, and injects
faults on request. Development tool only: never deployed.
"""

from local.azureml_emulator.emulator import AZURITE_ACCOUNT_KEY, AzureMLEmulator

__all__ = ["AZURITE_ACCOUNT_KEY", "AzureMLEmulator"]
