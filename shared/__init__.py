"""finetune-autopilot's domain package: settings, datasets, runs, the reconciler, adapters.

Nothing in this package reads settings or opens connections at import time: an
import failure makes the Functions host drop every function of the app.
"""
