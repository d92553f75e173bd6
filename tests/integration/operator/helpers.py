"""Helpers for the operator tests: GrpcTargets, test-written EndpointSlices, ConfigMap writes.

Fixtures live in conftest.py; waiting is testenv.wait.until.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch

from kuberesolver.core.snapshot import ENDPOINTS_KEY, Endpoint, Snapshot, decode
from testenv.operator_process import OperatorProcess
from testenv.wait import until

GROUP, VERSION, PLURAL = "kuberesolver.io", "v1alpha1", "grpctargets"


def create_target(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GrpcTarget",
        "metadata": {"name": name},
        "spec": spec,
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


def patch_target(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec},
        _content_type="application/merge-patch+json",
    )  # fmt: skip


def get_target(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def condition(target: dict[str, Any], type_: str) -> dict[str, Any]:
    for c in (target.get("status") or {}).get("conditions") or []:
        if c["type"] == type_:
            return dict(c)
    return {}


def get_configmap(api: client.ApiClient, namespace: str, name: str) -> client.V1ConfigMap | None:
    try:
        return client.CoreV1Api(api).read_namespaced_config_map(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def events_for(api: client.ApiClient, namespace: str, name: str) -> list[client.CoreV1Event]:
    items = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    )
    return list(items)


def snapshot_of(api: client.ApiClient, namespace: str, name: str) -> Snapshot | None:
    """The snapshot in ConfigMap ``name``, or None while there is none."""
    cm = get_configmap(api, namespace, name)
    if cm is None or not cm.data or ENDPOINTS_KEY not in cm.data:
        return None
    return decode(cm.data[ENDPOINTS_KEY])


def addresses(snap: Snapshot | None) -> set[str]:
    """The snapshot's endpoints as ``address:port``."""
    return {e.hostport for e in snap.endpoints} if snap else set()


def wait_snapshot(
    api: client.ApiClient,
    namespace: str,
    name: str,
    want: set[str],
    key: Callable[[Endpoint], str],
    timeout_s: float = 60,
) -> Snapshot:
    """Wait until ConfigMap ``name`` holds a snapshot whose endpoints' ``key``s are ``want``."""

    def check() -> Snapshot:
        snap = snapshot_of(api, namespace, name)
        assert snap is not None, "no snapshot yet"
        got = {key(e) for e in snap.endpoints}
        assert got == want, f"published {sorted(got)}"
        return snap

    return until(check, timeout_s=timeout_s, message=f"{namespace}/{name} == {sorted(want)}")


def wait_published(
    api: client.ApiClient, namespace: str, name: str, ips: set[str], timeout_s: float = 60
) -> Snapshot:
    """Wait until the snapshot's endpoint addresses are ``ips`` (any ports)."""
    return wait_snapshot(api, namespace, name, ips, lambda e: e.address, timeout_s)


def wait_addresses(
    api: client.ApiClient, namespace: str, name: str, want: set[str], timeout_s: float = 60
) -> Snapshot:
    """Wait until the snapshot's endpoints are ``want``, as ``address:port``."""
    return wait_snapshot(api, namespace, name, want, lambda e: e.hostport, timeout_s)


def metric_sum(op: OperatorProcess, name: str) -> float:
    """The sum of one metric's samples, scraped from the operator."""
    total = 0.0
    for line in op.metrics().splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metric_sum_labelled(op: OperatorProcess, name: str, **labels: str) -> float:
    """The sum of one metric's samples that carry ``labels``, scraped from the operator."""
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in op.metrics().splitlines():
        if line.startswith(name + "{") and all(w in line.split("}", 1)[0] for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


def configmap_writes(op: OperatorProcess) -> float:
    return metric_sum(op, "kuberesolver_operator_configmap_writes_total")


def reconciles(op: OperatorProcess) -> float:
    return metric_sum(op, "kuberesolver_operator_reconcile_seconds_count")


def make_slice(
    api: client.ApiClient,
    namespace: str,
    service: str,
    name: str,
    endpoints: list[dict[str, Any]],
    ports: list[dict[str, Any]] | None = None,
    address_type: str = "IPv4",
    managed_by: str = "tests.kuberesolver.io",
) -> None:
    """An EndpointSlice written by the test itself (as another controller would, or, with
    ``managed_by`` ``endpointslice-controller.k8s.io``, under that controller's name)."""
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": managed_by,
            },
        },
        "addressType": address_type,
        "ports": ports
        if ports is not None
        else [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
        "endpoints": endpoints,
    }
    discovery = client.DiscoveryV1Api(api)
    try:
        discovery.create_namespaced_endpoint_slice(namespace, body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        discovery.replace_namespaced_endpoint_slice(
            name,
            namespace,
            {**body, "metadata": {**body["metadata"], **_rv(discovery, namespace, name)}},
        )


def _rv(discovery: client.DiscoveryV1Api, namespace: str, name: str) -> dict[str, str]:
    current = discovery.read_namespaced_endpoint_slice(name, namespace)
    return {"resourceVersion": current.metadata.resource_version}


def delete_slice(api: client.ApiClient, namespace: str, name: str) -> None:
    client.DiscoveryV1Api(api).delete_namespaced_endpoint_slice(name, namespace)


def selectorless_service(
    api: client.ApiClient,
    namespace: str,
    name: str,
    ports: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    ip_families: list[str] | None = None,
) -> None:
    """A headless Service without a selector: its slices are the test's to write."""
    spec: dict[str, Any] = {
        "clusterIP": "None",
        "ports": ports or [{"name": "grpc", "port": 8080, "targetPort": 50051, "protocol": "TCP"}],
    }
    if ip_families:
        spec["ipFamilies"] = ip_families
        spec["ipFamilyPolicy"] = "PreferDualStack" if len(ip_families) > 1 else "SingleStack"
    client.CoreV1Api(api).create_namespaced_service(
        namespace,
        {"metadata": {"name": name, "annotations": annotations or {}}, "spec": spec},
    )


def ep(address: str, **conditions: Any) -> dict[str, Any]:
    """One endpoint of a test-written slice; ``conditions`` left out are absent in the API too."""
    out: dict[str, Any] = {"addresses": [address]}
    if conditions:
        out["conditions"] = conditions
    return out


class ConfigMapWrites:
    """Every version of one ConfigMap after ``resource_version``, from a watch (a context manager).

    The operator's own write counter is global; this counts the writes to one
    ConfigMap only, whatever else the operator is doing meanwhile.
    """

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, resource_version: str
    ) -> None:
        self.versions: list[dict[str, str]] = []
        self._watch = watch.Watch()
        self._lock = threading.Lock()
        core = client.CoreV1Api(api)

        self.stopped = False
        self.error: BaseException | None = None

        def run() -> None:
            try:
                for event in self._watch.stream(
                    core.list_namespaced_config_map, namespace,
                    field_selector=f"metadata.name={name}", resource_version=resource_version,
                    timeout_seconds=120,
                ):  # fmt: skip
                    if event["type"] in ("ADDED", "MODIFIED"):
                        with self._lock:
                            self.versions.append(dict(event["object"].data or {}))
            except Exception as exc:  # after stop(), a closed stream is expected
                if not self.stopped:
                    self.error = exc

        self._thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> ConfigMapWrites:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True
        self._watch.stop()

    def snapshot(self) -> list[dict[str, str]]:
        if self.error is not None:
            raise RuntimeError(f"the ConfigMap watch failed: {self.error!r}")
        with self._lock:
            return list(self.versions)


@dataclass(frozen=True)
class Namespace:
    """The helpers above, bound to one test's admin client and namespace (fixture ``ns``)."""

    api: client.ApiClient
    name: str

    def service(self, name: str, **kwargs: Any) -> None:
        """:func:`selectorless_service` here (``ports``, ``annotations``, ``ip_families``)."""
        selectorless_service(self.api, self.name, name, **kwargs)

    def make_slice(
        self, service: str, name: str, endpoints: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        """:func:`make_slice` here (``ports``, ``address_type``)."""
        make_slice(self.api, self.name, service, name, endpoints, **kwargs)

    def delete_slice(self, name: str) -> None:
        delete_slice(self.api, self.name, name)

    def create_target(self, name: str, spec: dict[str, Any]) -> None:
        create_target(self.api, self.name, name, spec)

    def patch_target(self, name: str, spec: dict[str, Any]) -> None:
        patch_target(self.api, self.name, name, spec)

    def get_target(self, name: str) -> dict[str, Any]:
        return get_target(self.api, self.name, name)

    def get_configmap(self, name: str) -> client.V1ConfigMap | None:
        return get_configmap(self.api, self.name, name)

    def events_for(self, name: str) -> list[client.CoreV1Event]:
        return events_for(self.api, self.name, name)

    def snapshot_of(self, name: str) -> Snapshot | None:
        return snapshot_of(self.api, self.name, name)

    def wait_published(self, name: str, ips: set[str], timeout_s: float = 60) -> Snapshot:
        return wait_published(self.api, self.name, name, ips, timeout_s)

    def wait_addresses(self, name: str, want: set[str], timeout_s: float = 60) -> Snapshot:
        return wait_addresses(self.api, self.name, name, want, timeout_s)

    def wait_condition(
        self, name: str, type_: str, timeout_s: float = 60, **want: str
    ) -> dict[str, Any]:
        """Wait until GrpcTarget ``name``'s condition ``type_`` has ``want`` (``status=``,
        ``reason=``); the target as then read."""

        def check() -> dict[str, Any]:
            t = self.get_target(name)
            c = condition(t, type_)
            assert all(c.get(k) == v for k, v in want.items()), f"{type_}: {c}"
            return t

        return until(check, timeout_s=timeout_s, message=f"{name}: {type_} {want}")

    def wait_event(self, name: str, timeout_s: float = 30, **want: str) -> None:
        """Wait until an Event about ``name`` has ``want`` (``reason=``, ``type=``)."""
        until(
            lambda: any(
                all(getattr(e, k) == v for k, v in want.items()) for e in self.events_for(name)
            ),
            timeout_s=timeout_s,
            message=f"an Event about {name} with {want}",
        )
