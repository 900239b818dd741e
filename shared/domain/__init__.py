"""The run domain: pure rules and the ports they speak through (no Azure SDK, no I/O).

The run and its lifecycle (``runs``), the one decision (``decide``), settings,
errors, roles, smoke-test judging, lifecycle events, and the ports: ``azureml``,
``ledger``, ``storage``, the ``Scorer`` and ``EventPublisher`` protocols, and the
``Services`` bundle (``ports``). Everything above depends on this package; it
depends on nothing of the app's.
"""
