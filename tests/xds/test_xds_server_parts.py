"""The operator-side xDS server's pure parts: the bootstrap, the store, the shared builders
under another authority, zones as localities."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2 as hc
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from kuberesolver.__main__ import main
from kuberesolver.core.snapshot import Endpoint, Snapshot, TargetRef
from kuberesolver.xds.ads_aio import AdsServer, applies_stream_duration
from kuberesolver.xds.bootstrap import DEFAULT_AUTHORITY, LISTENER_TEMPLATE, build_bootstrap
from kuberesolver.xds.channel_resources import ChannelSpec
from kuberesolver.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ResourceSpec,
    build_resources,
    listener_name,
)
from kuberesolver.xds.settings import XdsSettings
from kuberesolver.xds.store import XdsStore

REF = TargetRef("greeter", "ns", "grpc", "grpc", 8080)
AUTH = "xds.example.org"


def snap(*endpoints: Endpoint, revision: int = 1, **kw: Any) -> Snapshot:
    return Snapshot(REF, revision, endpoints, **kw)


# -- the bootstrap ----------------------------------------------------------------


def test_the_bootstrap_names_the_authority_and_its_listener_template() -> None:
    doc = build_bootstrap("xds.kuberesolver-system.svc:18000", AUTH, zone="z1")
    server = {
        "server_uri": "xds.kuberesolver-system.svc:18000",
        "channel_creds": [{"type": "insecure"}],
        "server_features": ["xds_v3"],
    }
    assert doc["xds_servers"] == [server]
    assert doc["node"] == {"id": "kuberesolver-client", "locality": {"zone": "z1"}}
    assert doc["authorities"] == {
        AUTH: {
            "xds_servers": [server],
            "client_listener_resource_name_template": (
                f"xdstp://{AUTH}/envoy.config.listener.v3.Listener/%s"
            ),
        }
    }
    # the template the client fills in is the name the server serves
    template = doc["authorities"][AUTH]["client_listener_resource_name_template"]
    assert template % "greeter.ns" == listener_name("greeter.ns", AUTH)
    assert LISTENER_TEMPLATE.format(authority=AUTH) == template


def test_the_bootstrap_carries_tls_files() -> None:
    doc = build_bootstrap("x:1", ca_file="/ca.pem", cert_file="/c.pem", key_file="/k.pem")
    assert doc["xds_servers"][0]["channel_creds"] == [
        {
            "type": "tls",
            "config": {
                "ca_certificate_file": "/ca.pem",
                "certificate_file": "/c.pem",
                "private_key_file": "/k.pem",
            },
        }
    ]
    assert list(doc["authorities"]) == [DEFAULT_AUTHORITY]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("",), "URI is empty"),
        (("x:1", "a/b"), "authority"),
        (("x:1", ""), "authority"),
    ],
)
def test_a_bad_bootstrap_request_is_refused(args: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        build_bootstrap(*args)
    with pytest.raises(ValueError, match="both its certificate and its key"):
        build_bootstrap("x:1", cert_file="/c.pem")


def test_the_command_writes_the_bootstrap(tmp_path: Path) -> None:
    out = tmp_path / "bootstrap.json"
    assert main(["bootstrap", "--server", "op:18000", "--authority", AUTH, "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == build_bootstrap("op:18000", AUTH)
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_the_command_prints_and_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bootstrap", "--server", "op:18000"]) == 0
    assert json.loads(capsys.readouterr().out) == build_bootstrap("op:18000")
    assert main(["bootstrap", "--server", "op:1", "--cert-file", "c.pem"]) == 2
    assert "both its certificate and its key" in capsys.readouterr().err


def test_the_command_loads_no_grpc() -> None:
    code = (
        "import sys; from kuberesolver.__main__ import main; "
        "main(['bootstrap', '--server', 'op:1']); "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('grpc', 'envoy')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, capture_output=True)


# -- the shared builders under the operator's authority ---------------------------


def test_every_name_is_under_the_spec_authority() -> None:
    spec = ResourceSpec(name="greeter.ns", service="greeter", namespace="ns", authority=AUTH)
    built = build_resources(spec, snap(Endpoint("10.0.0.1", 1)))
    prefix = f"xdstp://{AUTH}/"
    listener = built[LISTENER_TYPE][f"{prefix}envoy.config.listener.v3.Listener/greeter.ns"]
    cluster = built[CLUSTER_TYPE][f"{prefix}envoy.config.cluster.v3.Cluster/greeter.ns"]
    cla_name = f"{prefix}envoy.config.endpoint.v3.ClusterLoadAssignment/greeter.ns"
    cla = built[ENDPOINT_TYPE][cla_name]
    assert isinstance(listener, listener_pb2.Listener)
    manager = hcm_pb2.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(manager)
    routes = manager.route_config.virtual_hosts[0].routes
    assert {r.route.cluster for r in routes} == {cluster.name}
    assert isinstance(cluster, cluster_pb2.Cluster)
    assert cluster.eds_cluster_config.service_name == cla_name
    assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
    assert cla.cluster_name == cla_name
    assert {loc.locality.region for loc in cla.endpoints} == {AUTH}


def _localities(cla: Any) -> list[tuple[int, str, int, list[tuple[str, int]]]]:
    return [
        (
            loc.priority,
            loc.locality.zone,
            loc.load_balancing_weight.value,
            [
                (e.endpoint.address.socket_address.address, e.health_status)
                for e in loc.lb_endpoints
            ],
        )
        for loc in cla.endpoints
    ]


def test_zones_are_localities_weighted_by_ready_endpoints() -> None:
    spec = ResourceSpec(name="greeter.ns", service="greeter", namespace="ns", authority=AUTH)
    s = snap(
        Endpoint("10.0.0.1", 1, zone="a"),
        Endpoint("10.0.0.2", 1, zone="a"),
        Endpoint("10.0.0.3", 1, zone="a", terminating=True),
        Endpoint("10.0.0.4", 1, zone="b"),
        Endpoint("10.0.0.5", 1, zone="c", ready=False),
        Endpoint("10.0.0.6", 1),
        cluster_ips=("10.96.0.1",),
    )
    cla = next(iter(build_resources(spec, s)[ENDPOINT_TYPE].values()))
    assert _localities(cla) == [
        (0, "", 1, [("10.0.0.6", hc.HEALTHY)]),
        (0, "a", 2, [("10.0.0.1", hc.HEALTHY), ("10.0.0.2", hc.HEALTHY),
                     ("10.0.0.3", hc.DRAINING)]),
        (0, "b", 1, [("10.0.0.4", hc.HEALTHY)]),
        (0, "c", 1, [("10.0.0.5", hc.UNHEALTHY)]),
        (1, "service-cluster-ip", 1, [("10.96.0.1", hc.HEALTHY)]),
    ]  # fmt: skip


@pytest.mark.parametrize("policy", ["pick_first", "weighted_round_robin"])
def test_policies_that_balance_per_locality_keep_one(policy: str) -> None:
    spec = ResourceSpec(name="g.ns", service="g", namespace="ns", authority=AUTH)
    s = snap(
        Endpoint("10.0.0.1", 1, zone="a"),
        Endpoint("10.0.0.2", 1, zone="b"),
        service_config={"loadBalancingConfig": [{policy: {}}]},
    )
    cla = next(iter(build_resources(spec, s)[ENDPOINT_TYPE].values()))
    assert [(p, z) for p, z, _, _ in _localities(cla)] == [(0, "all")]


def test_the_client_keeps_its_own_zone_first() -> None:
    spec = ChannelSpec("greeter", "ns", "grpc", zone="b")
    s = snap(Endpoint("10.0.0.1", 1, zone="a"), Endpoint("10.0.0.2", 1, zone="b"))
    cla = next(iter(build_resources(spec, s)[ENDPOINT_TYPE].values()))
    assert [(p, z) for p, z, _, _ in _localities(cla)] == [(0, "b"), (1, "other-zones")]
    assert cla.cluster_name.startswith("xdstp://kuberesolver/")


# -- the store ----------------------------------------------------------------------


def test_the_store_reports_only_what_changed() -> None:
    store = XdsStore(AUTH)
    seen: list[dict[str, frozenset[str]]] = []
    store.listen(lambda changes: seen.append(dict(changes)))
    key = ("ns", "greeter")
    names = {
        LISTENER_TYPE: store.listener(key),
        CLUSTER_TYPE: store.listener(key).replace("listener.v3.Listener", "cluster.v3.Cluster"),
        ENDPOINT_TYPE: store.listener(key).replace(
            "listener.v3.Listener", "endpoint.v3.ClusterLoadAssignment"
        ),
    }
    assert store.listener(key) == f"xdstp://{AUTH}/envoy.config.listener.v3.Listener/greeter.ns"

    first = store.put(key, snap(Endpoint("10.0.0.1", 1)))
    assert first == {t: frozenset({n}) for t, n in names.items()}
    assert store.put(key, snap(Endpoint("10.0.0.1", 1), revision=2)) == {}  # same resources
    moved = store.put(key, snap(Endpoint("10.0.0.2", 1), revision=3))
    assert moved == {ENDPOINT_TYPE: frozenset({names[ENDPOINT_TYPE]})}
    pick_first = {"loadBalancingConfig": [{"pick_first": {}}]}
    policy = store.put(key, snap(Endpoint("10.0.0.2", 1), revision=3), pick_first)
    assert set(policy) == {CLUSTER_TYPE, ENDPOINT_TYPE}  # one locality for pick_first: "all"
    got = store.get(key)
    assert got is not None
    assert got[1] == pick_first
    assert store.resources(CLUSTER_TYPE, [names[CLUSTER_TYPE], "nope"]).keys() == {
        names[CLUSTER_TYPE]
    }
    removed = store.remove(key)
    assert removed == {t: frozenset({n}) for t, n in names.items()}
    assert store.remove(key) == {}
    assert store.keys() == []
    assert seen == [first, moved, policy, removed]


def test_a_failing_listener_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    store = XdsStore(AUTH)
    heard: list[object] = []

    def broken(_: object) -> None:
        raise RuntimeError("boom")

    store.listen(broken)
    stop = store.listen(heard.append)
    store.put(("ns", "a"), snap(Endpoint("10.0.0.1", 1)))
    assert len(heard) == 1
    assert "listener failed" in caplog.text
    stop()
    store.put(("ns", "a"), snap(Endpoint("10.0.0.2", 1)))
    assert len(heard) == 1


def test_a_snapshot_that_cannot_be_served_keeps_the_last_good() -> None:
    store = XdsStore(AUTH)
    heard: list[object] = []
    store.listen(heard.append)
    key = ("ns", "greeter")
    store.put(key, snap(Endpoint("10.0.0.1", 1)))
    cla = store.listener(key).replace("listener.v3.Listener", "endpoint.v3.ClusterLoadAssignment")
    before = store.resources(ENDPOINT_TYPE, [cla])
    with pytest.raises(ValueError, match=r"greeter\.ns revision 2: cannot build .* previous ones"):
        store.put(key, snap(Endpoint("10.0.0.2", 2**40), revision=2))
    assert store.resources(ENDPOINT_TYPE, [cla]) == before
    got = store.get(key)
    assert got is not None
    assert got[0].revision == 1
    assert len(heard) == 1


# -- method timeouts -------------------------------------------------------------------


def timed_config(timeout: str) -> dict[str, Any]:
    return {"methodConfig": [{"name": [{"service": "kr.test.Echo"}], "timeout": timeout}]}


def durations_ms(packed: Any) -> list[int | None]:
    """Each route's ``max_stream_duration`` (ms; ``None``: none) in a packed Listener."""
    listener, manager = listener_pb2.Listener(), hcm_pb2.HttpConnectionManager()
    packed.Unpack(listener)
    listener.api_listener.api_listener.Unpack(manager)
    return [
        r.route.max_stream_duration.max_stream_duration.ToMilliseconds()
        if r.route.HasField("max_stream_duration")
        else None
        for r in manager.route_config.virtual_hosts[0].routes
    ]


def test_the_store_keeps_a_listener_with_the_method_timeouts() -> None:
    store = XdsStore(AUTH)
    key, other = ("ns", "greeter"), ("ns", "plain")
    listener = store.listener(key)
    first = store.put(key, snap(Endpoint("10.0.0.1", 1)), timed_config("1s"))
    store.put(other, snap(Endpoint("10.0.0.2", 1)))
    assert set(first) == {LISTENER_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE}
    assert store.timed(key)
    assert not store.timed(other)

    def served(timeouts: bool, name: str = listener) -> list[int | None]:
        return durations_ms(store.resources(LISTENER_TYPE, [name], timeouts=timeouts)[name])

    assert served(False) == [None, None]  # the service's route, then the default one
    assert served(True) == [1000, None]
    assert served(True, store.listener(other)) == served(False, store.listener(other)) == [None]
    cla = listener.replace("listener.v3.Listener", "endpoint.v3.ClusterLoadAssignment")
    assert store.resources(ENDPOINT_TYPE, [cla], timeouts=True).keys() == {cla}

    # a change of the timeout alone leaves the plain Listener as it was, and is reported
    before = store.resources(LISTENER_TYPE, [listener])[listener].value
    changed = store.put(key, snap(Endpoint("10.0.0.1", 1), revision=2), timed_config("2s"))
    assert changed == {LISTENER_TYPE: frozenset({listener})}
    assert store.resources(LISTENER_TYPE, [listener])[listener].value == before
    assert served(True) == [2000, None]
    assert store.put(key, snap(Endpoint("10.0.0.1", 1), revision=3), timed_config("2s")) == {}

    # the timeout goes: the variant goes, and that is reported too
    no_timeout = {"methodConfig": [{"name": [{"service": "kr.test.Echo"}]}]}
    gone = store.put(key, snap(Endpoint("10.0.0.1", 1), revision=4), no_timeout)
    assert gone == {LISTENER_TYPE: frozenset({listener})}
    assert not store.timed(key)
    assert served(True) == served(False) == [None, None]

    store.put(key, snap(Endpoint("10.0.0.1", 1), revision=5), timed_config("1s"))
    store.remove(key)
    assert not store.timed(key)
    assert store.resources(LISTENER_TYPE, [listener], timeouts=True) == {}
    assert not store._timed  # nothing kept of a target that went


@pytest.mark.parametrize(
    ("name", "version", "applies"),
    [
        ("gRPC Go", "1.83.2", True),  # measured, as grpcio's below
        ("gRPC Java", "1.75.0", True),  # from its source, not measured
        ("envoy", "1.36.0", True),  # any other named client: it applies them, or ignores them
        ("gRPC C-core linux Python", "C-core 58.0.0 Python 1.85.4", False),  # grpcio 1.85.4
        ("gRPC C-core linux", "C-core 58.0.0", False),  # C++ (from its source, not measured)
        ("gRPC C-core", "", False),
        ("", "", False),  # nameless: the safe side
        ("  ", "1.0", False),
    ],
)
def test_only_clients_that_end_calls_in_time_get_method_timeouts(
    name: str, version: str, applies: bool
) -> None:
    assert applies_stream_duration(name, version) is applies


def test_the_server_refuses_an_unknown_timeouts_mode() -> None:
    with pytest.raises(ValueError, match="method_timeouts must be one of"):
        AdsServer(XdsStore(AUTH), method_timeouts="some")


# -- settings -------------------------------------------------------------------------


def test_settings_from_the_environment() -> None:
    assert XdsSettings.from_env({}) == XdsSettings()
    assert not XdsSettings.from_env({}).enabled
    s = XdsSettings.from_env(
        {
            "KUBERESOLVER_XDS_ADDRESS": "[::]:18000",
            "KUBERESOLVER_XDS_AUTHORITY": AUTH,
            "KUBERESOLVER_XDS_CERT_FILE": "/tls/tls.crt",
            "KUBERESOLVER_XDS_KEY_FILE": "/tls/tls.key",
            "KUBERESOLVER_XDS_CLIENT_CA_FILE": "/tls/ca.crt",
        }
    )
    assert (s.enabled, s.tls, s.address, s.authority) == (True, True, "[::]:18000", AUTH)
    assert s.method_timeouts == "auto"
    for value, mode in [("all", "all"), (" None ", "none"), ("AUTO", "auto"), ("", "auto")]:
        env = {"KUBERESOLVER_XDS_METHOD_TIMEOUTS": value}
        assert XdsSettings.from_env(env).method_timeouts == mode


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"KUBERESOLVER_XDS_CERT_FILE": "/c"}, "set both"),
        ({"KUBERESOLVER_XDS_KEY_FILE": "/k"}, "set both"),
        ({"KUBERESOLVER_XDS_CLIENT_CA_FILE": "/ca"}, "needs TLS"),
        ({"KUBERESOLVER_XDS_AUTHORITY": "a/b"}, "must not hold"),
        ({"KUBERESOLVER_XDS_ADDRESS": "18000"}, "HOST:PORT"),
        (
            {"KUBERESOLVER_XDS_METHOD_TIMEOUTS": "go"},
            "KUBERESOLVER_XDS_METHOD_TIMEOUTS must be 'auto', 'all' or 'none', got 'go'",
        ),
    ],
)
def test_unusable_settings_name_their_variable(env: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        XdsSettings.from_env(env)


def test_a_client_zone_gets_its_own_zone_first() -> None:
    store = XdsStore(AUTH)
    key = ("ns", "greeter")
    a, b = Endpoint("10.0.0.1", 1, zone="a"), Endpoint("10.0.0.2", 1, zone="b")
    store.put(key, snap(a, b))
    cla = store.listener(key).replace("listener.v3.Listener", "endpoint.v3.ClusterLoadAssignment")

    def localities(zone: str) -> list[tuple[int, str]]:
        message = endpoint_pb2.ClusterLoadAssignment()
        store.resources(ENDPOINT_TYPE, [cla], zone=zone)[cla].Unpack(message)
        return [(p, z) for p, z, _, _ in _localities(message)]

    assert localities("") == [(0, "a"), (0, "b")]
    assert localities("b") == [(0, "b"), (1, "other-zones")]
    assert localities("c") == [(0, "a"), (0, "b")]  # no endpoint there: zones as localities
    # b's endpoint stops being ready: zone b's clients fail over at once
    changes = store.put(key, snap(a, Endpoint("10.0.0.2", 1, zone="b", ready=False), revision=2))
    assert ENDPOINT_TYPE in changes
    assert localities("b") == [(0, "a"), (0, "b")]
    # a zone moves without changing the shared CLA (pick_first: one locality): reported
    pf = {"loadBalancingConfig": [{"pick_first": {}}]}
    store.put(key, snap(a, b, revision=3), pf)
    assert localities("b") == [(0, "b"), (1, "other-zones")]
    moved = store.put(key, snap(a, Endpoint("10.0.0.2", 1, zone="c"), revision=4), pf)
    assert moved == {ENDPOINT_TYPE: frozenset({cla})}
    assert localities("b") == [(0, "all")]
    store.remove(key)
    assert store.resources(ENDPOINT_TYPE, [cla], zone="b") == {}
