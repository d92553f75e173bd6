"""Pure builders (snapshot -> xDS resources), the bootstrap merge, and settings resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from envoy.config.core.v3 import health_check_pb2 as hc

from kuberesolver.client.settings import resolve
from kuberesolver.core.policies import normalize_policy, policy_from_service_config
from kuberesolver.core.snapshot import Endpoint
from kuberesolver.xds import bootstrap_inprocess as bootstrap
from kuberesolver.xds.bootstrap import ENV_CONFIG, ENV_FILE
from kuberesolver.xds.channel_resources import ChannelSpec
from kuberesolver.xds.resources import AUTHORITY, build_cluster, build_endpoints, build_listener

SPEC = ChannelSpec("greeter", "ns", "grpc")


def _addresses(cla: object) -> list[list[tuple[str, int, int]]]:
    return [
        [
            (
                e.endpoint.address.socket_address.address,
                e.endpoint.address.socket_address.port_value,
                e.health_status,
            )
            for e in loc.lb_endpoints
        ]
        for loc in cla.endpoints  # type: ignore[attr-defined]
    ]


def test_duplicates_are_removed_keeping_the_healthiest() -> None:
    eps = [
        Endpoint("10.0.0.1", 80, ready=False),
        Endpoint("10.0.0.1", 80),
        Endpoint("10.0.0.2", 80, terminating=True, ready=False),
        Endpoint("10.0.0.2", 80, terminating=True, ready=False),
    ]
    cla = build_endpoints(SPEC, eps)
    assert _addresses(cla) == [[("10.0.0.1", 80, hc.HEALTHY), ("10.0.0.2", 80, hc.DRAINING)]]


def test_every_locality_has_a_name_and_a_weight() -> None:
    cla = build_endpoints(SPEC, [Endpoint("10.0.0.1", 80)])
    for loc in cla.endpoints:
        assert loc.locality.region == AUTHORITY
        assert loc.load_balancing_weight.value == 1


def test_health_mapping() -> None:
    eps = [
        Endpoint("10.0.0.1", 80),
        Endpoint("10.0.0.2", 80, ready=False),
        Endpoint("10.0.0.3", 80, ready=False, terminating=True),
    ]
    (loc,) = _addresses(build_endpoints(SPEC, eps))
    assert [h for _, _, h in loc] == [hc.HEALTHY, hc.UNHEALTHY, hc.DRAINING]


def test_zone_priorities() -> None:
    spec = ChannelSpec("greeter", "ns", "grpc", zone="b")
    eps = [Endpoint("10.0.0.1", 80, zone="a"), Endpoint("10.0.0.2", 80, zone="b")]
    cla = build_endpoints(spec, eps)
    assert [(loc.priority, loc.locality.zone) for loc in cla.endpoints] == [
        (0, "b"),
        (1, "other-zones"),
    ]
    # the own zone has no ready endpoint: no preference
    eps[1] = Endpoint("10.0.0.2", 80, zone="b", ready=False)
    cla = build_endpoints(spec, eps)
    assert [loc.priority for loc in cla.endpoints] == [0]


def test_empty_snapshot_names_the_problem() -> None:
    cla = build_endpoints(SPEC, [], revision=4)
    (loc,) = cla.endpoints
    assert (
        loc.locality.zone
        == "no endpoints for greeter.ns in its kuberesolver snapshot at revision 4"
    )
    cla = build_endpoints(SPEC, [Endpoint("10.0.0.1", 80, ready=False)])
    assert cla.endpoints[0].locality.zone.startswith("no ready endpoints for greeter.ns")


def test_listener_and_cluster_names_are_xdstp() -> None:
    listener = build_listener(SPEC)
    assert listener.name == f"xdstp://{AUTHORITY}/envoy.config.listener.v3.Listener/{SPEC.name}"
    cluster = build_cluster(SPEC)
    assert cluster.eds_cluster_config.service_name.startswith(f"xdstp://{AUTHORITY}/")


@pytest.mark.parametrize(
    ("config", "policy"),
    [
        ({"loadBalancingConfig": [{"round_robin": {}}]}, "round_robin"),
        ({"loadBalancingConfig": [{"unknown": {}}, {"pick_first": {}}]}, "pick_first"),
        ({"loadBalancingConfig": [{"weighted_round_robin": {}}]}, "weighted_round_robin"),
        ({"loadBalancingPolicy": "ROUND_ROBIN"}, "round_robin"),
        ({}, None),
    ],
)
def test_policy_from_service_config(config: dict[str, object], policy: str | None) -> None:
    assert policy_from_service_config(config) == policy


def test_least_request_maps_to_the_load_aware_policy_grpc_supports() -> None:
    assert normalize_policy("least_request") == "weighted_round_robin"
    with pytest.raises(ValueError, match="unknown load-balancing policy 'random'"):
        normalize_policy("random")


def test_spec_names_are_distinct_per_option() -> None:
    names = {
        ChannelSpec("g", "n", "p").name,
        ChannelSpec("g", "n", "p", zone="a").name,
        ChannelSpec("g", "n", "p", lb_policy="pick_first").name,
        ChannelSpec("g", "n", "p", lb_policy="round_robin").name,
        ChannelSpec("g", "n", "p", source="abc").name,
        ChannelSpec("g", "n", "q").name,
    }
    assert len(names) == 6


def test_bootstrap_of_our_own() -> None:
    b = bootstrap.own_bootstrap("unix:/tmp/x.sock")
    assert b["xds_servers"][0]["server_uri"] == "unix:/tmp/x.sock"
    assert AUTHORITY in b["authorities"]


def test_bootstrap_merge_keeps_the_applications_own() -> None:
    theirs = {
        "xds_servers": [
            {"server_uri": "td.example:443", "channel_creds": [{"type": "google_default"}]}
        ],
        "node": {"id": "app"},
        "authorities": {"other": {"xds_servers": []}},
    }
    merged = bootstrap.merge_bootstrap(theirs, "unix:/tmp/x.sock")
    assert merged["xds_servers"] == theirs["xds_servers"]
    assert merged["node"] == {"id": "app"}
    assert set(merged["authorities"]) == {"other", AUTHORITY}
    with pytest.raises(ValueError, match="already defines an authority 'kuberesolver'"):
        bootstrap.merge_bootstrap(merged, "unix:/tmp/y.sock")


def test_bootstrap_names_server_listeners_under_our_authority_unless_the_app_does() -> None:
    """kuberesolver.server's Listeners; an application's own template is kept."""
    template = "server_listener_resource_name_template"
    ours = bootstrap.own_bootstrap("unix:/tmp/x.sock")[template]
    assert ours.startswith(f"xdstp://{AUTHORITY}/envoy.config.listener.v3.Listener/")
    assert bootstrap.merge_bootstrap({"node": {"id": "app"}}, "unix:/tmp/x.sock")[template] == ours
    theirs = {"node": {"id": "app"}, template: "grpc/server?xds.resource.listening_address=%s"}
    assert bootstrap.merge_bootstrap(theirs, "unix:/tmp/x.sock")[template] == theirs[template]


def test_install_merges_a_bootstrap_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps({"xds_servers": [{"server_uri": "td:443"}], "node": {"id": "app"}}))
    monkeypatch.setenv(ENV_FILE, str(path))
    monkeypatch.setenv(ENV_CONFIG, "")
    installed = bootstrap.install_bootstrap("unix:/tmp/x.sock")
    assert ENV_FILE not in __import__("os").environ
    assert installed["node"] == {"id": "app"}
    assert json.loads(__import__("os").environ[ENV_CONFIG]) == installed
    # installing again (a restarted server) merges into the original, not into ours
    again = bootstrap.install_bootstrap("unix:/tmp/y.sock")
    assert again["authorities"][AUTHORITY]["xds_servers"][0]["server_uri"] == "unix:/tmp/y.sock"


def test_settings_argument_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KUBERESOLVER_DIR", "KUBERESOLVER_ZONE", "KUBERESOLVER_DEBOUNCE_MS"):
        monkeypatch.delenv(var, raising=False)
    s = resolve()
    assert (str(s.snapshot_dir), s.zone, s.debounce_ms) == ("/var/run/kuberesolver", None, 50)
    monkeypatch.setenv("KUBERESOLVER_DIR", "/env")
    monkeypatch.setenv("KUBERESOLVER_ZONE", "z-env")
    monkeypatch.setenv("KUBERESOLVER_DEBOUNCE_MS", "7")
    s = resolve()
    assert (str(s.snapshot_dir), s.zone, s.debounce_ms) == ("/env", "z-env", 7)
    s = resolve(snapshot_dir="/arg", zone="z-arg", debounce_ms=9)
    assert (str(s.snapshot_dir), s.zone, s.debounce_ms) == ("/arg", "z-arg", 9)
    monkeypatch.setenv("KUBERESOLVER_DEBOUNCE_MS", "soon")
    with pytest.raises(ValueError, match="KUBERESOLVER_DEBOUNCE_MS='soon' is not an integer"):
        resolve()
    with pytest.raises(ValueError, match="max_attempts=0 must be at least 1"):
        resolve(debounce_ms=1, max_attempts=0)


def test_ads_server_falls_back_to_loopback_tcp(tmp_path: Path) -> None:
    from kuberesolver.xds.ads_inprocess import AdsServer

    ads = AdsServer(socket_dir=str(tmp_path / "missing" / ("x" * 120)))
    assert ads.socket_path is None
    ads.start()
    try:
        uri = ads.uri
        assert uri.startswith("127.0.0.1:")
        assert not uri.endswith(":0")
        ads.stop()
        ads.start()  # a restart keeps the address the bootstrap names
        assert ads.uri == uri
    finally:
        ads.close()


def test_ads_server_private_unix_socket() -> None:
    import os
    import stat

    from kuberesolver.xds.ads_inprocess import AdsServer

    ads = AdsServer()
    try:
        assert ads.uri.startswith("unix:")
        assert ads.socket_path is not None
        mode = os.stat(os.path.dirname(ads.socket_path)).st_mode
        assert stat.S_IMODE(mode) == 0o700
    finally:
        ads.close()


def test_load_report_trailer() -> None:
    from xds.data.orca.v3 import orca_load_report_pb2

    import kuberesolver

    key, value = kuberesolver.load_report(cpu_utilization=0.25, rps=10.0, utilization={"q": 0.5})
    assert key == "endpoint-load-metrics-bin"
    report = orca_load_report_pb2.OrcaLoadReport.FromString(value)
    assert (report.cpu_utilization, report.rps_fractional, report.utilization["q"]) == (
        0.25,
        10.0,
        0.5,
    )
    with pytest.raises(ValueError, match="cpu_utilization or application_utilization"):
        kuberesolver.load_report(rps=1.0)


def test_inherited_bootstrap_is_rebuilt_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child process inherits the parent's GRPC_XDS_BOOTSTRAP_CONFIG: rebuild from its base."""
    monkeypatch.delenv(ENV_FILE, raising=False)
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    parent = bootstrap.install_bootstrap("unix:/tmp/parent.sock")
    child = bootstrap.install_bootstrap("unix:/tmp/child.sock")
    assert parent["authorities"][AUTHORITY]["xds_servers"][0]["server_uri"].endswith("parent.sock")
    assert child["authorities"][AUTHORITY]["xds_servers"][0]["server_uri"].endswith("child.sock")
    assert child["kuberesolver_installed"]["base"] is None
