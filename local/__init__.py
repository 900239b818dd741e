"""Local stand-ins for Azure services (Azurite, the Azure ML emulator).

Development and test use only: nothing in this package is imported by the Function
App, and it is kept out of deployments.
"""
