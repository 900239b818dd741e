"""The pipeline services: what triggers call. Intake, the reconciler and its lease,
the timer sweep, cancel/retry, Azure ML event handling, dataset splits, health.

They work through the ports in ``shared.domain`` only; adapters are wired in by
``shared.composition``.
"""
