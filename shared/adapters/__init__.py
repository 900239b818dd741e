"""Adapters: the only modules that import Azure SDKs. Each implements a port
from the domain and translates SDK exceptions into ``shared.domain.errors``."""
