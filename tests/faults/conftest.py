"""Fault-suite fixtures live in tests/conftest.py; the chaos tools in streamml.chaos."""
