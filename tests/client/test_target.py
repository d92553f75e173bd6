"""Target parsing: every kuberesolver form, one by one; custom schemes; malformed targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberesolver.client.target import ParsedTarget, parse_target, register_scheme, schemes


@pytest.fixture
def ns_file(tmp_path: Path) -> Path:
    path = tmp_path / "namespace"
    path.write_text("podns\n")
    return path


def _p(target: str, ns_file: Path) -> tuple[str, str, str]:
    t = parse_target(target, namespace_file=ns_file)
    return t.service, t.namespace, t.port


def test_service_and_port_number(ns_file: Path) -> None:
    assert _p("kubernetes:///svc:8080", ns_file) == ("svc", "podns", "8080")


def test_service_and_port_name(ns_file: Path) -> None:
    assert _p("kubernetes:///svc:grpc", ns_file) == ("svc", "podns", "grpc")


def test_service_namespace_and_port(ns_file: Path) -> None:
    assert _p("kubernetes:///svc.ns:8080", ns_file) == ("svc", "ns", "8080")


def test_cluster_local_name_with_port(ns_file: Path) -> None:
    assert _p("kubernetes:///svc.ns.svc.cluster.local:8080", ns_file) == ("svc", "ns", "8080")


def test_cluster_local_name_without_port(ns_file: Path) -> None:
    assert _p("kubernetes:///svc.ns.svc.cluster.local", ns_file) == ("svc", "ns", "")


def test_service_without_port(ns_file: Path) -> None:
    assert _p("kubernetes:///svc", ns_file) == ("svc", "podns", "")


def test_namespace_as_authority(ns_file: Path) -> None:
    assert _p("kubernetes://ns/svc:8080", ns_file) == ("svc", "ns", "8080")


def test_service_as_authority_with_trailing_slash(ns_file: Path) -> None:
    assert _p("kubernetes://svc:8080/", ns_file) == ("svc", "podns", "8080")


def test_service_namespace_as_authority(ns_file: Path) -> None:
    assert _p("kubernetes://svc.ns:8080/", ns_file) == ("svc", "ns", "8080")


def test_authority_without_trailing_slash(ns_file: Path) -> None:
    assert _p("kubernetes://svc.ns.svc.cluster.local:8080", ns_file) == ("svc", "ns", "8080")


def test_matching_namespaces_in_authority_and_host(ns_file: Path) -> None:
    assert _p("kubernetes://ns/svc.ns:8080", ns_file) == ("svc", "ns", "8080")


def test_namespace_defaults_to_pods_then_default(tmp_path: Path) -> None:
    t = parse_target("kubernetes:///svc:80", namespace_file=tmp_path / "missing")
    assert (t.namespace, t.namespace_explicit) == ("default", False)
    empty = tmp_path / "empty"
    empty.write_text("")
    assert parse_target("kubernetes:///svc:80", namespace_file=empty).namespace == "default"


def test_namespace_file_from_environment(ns_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERESOLVER_NAMESPACE_FILE", str(ns_file))
    assert parse_target("kubernetes:///svc:80").namespace == "podns"


def test_namespace_argument_fills_in_only_a_missing_namespace(ns_file: Path) -> None:
    assert parse_target("kubernetes:///svc:80", namespace="arg").namespace == "arg"
    assert parse_target("kubernetes:///svc.ns:80", namespace="arg").namespace == "ns"


def test_parsed_target_names() -> None:
    t = parse_target("kubernetes:///svc.ns:grpc")
    assert t == ParsedTarget("kubernetes", "svc", "ns", "grpc", True)
    assert t.server_name == "svc.ns"
    assert str(t) == "kubernetes:///svc.ns:grpc"


def test_scheme_is_case_insensitive() -> None:
    assert parse_target("Kubernetes:///svc.ns:80").scheme == "kubernetes"


def test_custom_scheme_registered_in_one_call() -> None:
    with pytest.raises(ValueError, match="'k8s' is not registered"):
        parse_target("k8s:///svc.ns:80")
    register_scheme("k8s")
    register_scheme("k8s://")  # idempotent, tolerant of the separator
    assert "k8s" in schemes()
    t = parse_target("k8s:///svc.ns:80")
    assert (t.scheme, t.service, t.namespace, t.port) == ("k8s", "svc", "ns", "80")
    assert parse_target("k8s://ns/svc:80").namespace == "ns"


@pytest.mark.parametrize("scheme", ["", "1abc", "a b", "dns", "xds"])
def test_invalid_custom_schemes(scheme: str) -> None:
    with pytest.raises(ValueError, match="scheme"):
        register_scheme(scheme)


@pytest.mark.parametrize(
    ("target", "part"),
    [
        ("svc.ns:8080", "missing scheme"),
        ("dns:///svc.ns:8080", "scheme 'dns' is not registered"),
        ("kubernetes:///", "missing service name"),
        ("kubernetes:///:8080", "missing service name"),
        ("kubernetes:///Svc:8080", "service name 'Svc'"),
        ("kubernetes:///1svc:8080", "service name '1svc'"),
        ("kubernetes:///svc_x:8080", "service name 'svc_x'"),
        ("kubernetes:///svc.NS:8080", "namespace 'NS'"),
        ("kubernetes://Bad_ns/svc:8080", "namespace 'Bad_ns' (the authority)"),
        ("kubernetes://ns1/svc.ns2:8080", "'ns1' (authority) and 'ns2' (host) disagree"),
        ("kubernetes:///svc:", "empty port"),
        ("kubernetes:///svc:0", "port 0 is out of range"),
        ("kubernetes:///svc:70000", "port 70000 is out of range"),
        ("kubernetes:///svc:GRPC", "port 'GRPC'"),
        ("kubernetes:///svc:a-very-long-port-name", "port 'a-very-long-port-name'"),
        ("kubernetes:///svc:1:2", "port '1:2'"),
        ("kubernetes:///svc.ns.cluster.local:80", "'cluster.local' after the namespace"),
        ("kubernetes:///svc.ns.svc.clu$ter:80", "cluster domain label 'clu$ter'"),
        ("kubernetes:///svc.ns:80?x=1", "query"),
        ("kubernetes:///svc.ns:80#frag", "fragment"),
        ("kubernetes://user@svc.ns:80/", "user info"),
        ("kubernetes://ns/svc/extra", "more than one segment"),
    ],
)
def test_malformed_targets_name_the_part_at_fault(target: str, part: str) -> None:
    with pytest.raises(ValueError, match="invalid kuberesolver target") as info:
        parse_target(target)
    assert part in str(info.value)
    assert repr(target) in str(info.value)


def test_non_string_target() -> None:
    with pytest.raises(TypeError):
        parse_target(b"kubernetes:///svc:80")  # type: ignore[arg-type]
