"""The root of the suite holds nothing that needs a control plane or a network namespace.

The folders that do (integration and its subfolders, e2e, adoption) set both
up in their own ``conftest.py`` through tests/cluster.py. The other folders, one
per component (core, kube, xds, client, operator, projector, package, testenv),
need neither: ``make test-unit`` runs them as an ordinary user with no binaries.
"""

from hypothesis import HealthCheck, settings

# Speed is measured by benchmarks, never by tests: on two shared, noisy cores an
# example's duration says nothing, so Hypothesis judges results only.
settings.register_profile(
    "kuberesolver", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("kuberesolver")
