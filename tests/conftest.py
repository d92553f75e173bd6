"""The root of the suite holds nothing that needs a control plane or a network namespace.

The folders that do (integration, operator, e2e) set both up in their own
``conftest.py`` through tests/cluster.py, so ``make test-unit`` (tests/unit and
tests/client) runs as an ordinary user with no binaries.
"""
