"""Helpers shared by tests: fakes of things we don't own and small test utilities."""
