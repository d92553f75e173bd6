"""The pure parts of pick metrics: channelz addresses, snapshot endpoints, the setting."""

from __future__ import annotations

import pytest

from kuberesolver.client.channelz import endpoint_key, parse_address
from kuberesolver.client.settings import ENV_PICK_METRICS, resolve


@pytest.mark.parametrize(
    ("target", "endpoint"),
    [
        ("ipv4:10.0.0.1:8080", "10.0.0.1:8080"),
        ("ipv6:%5B::1%5D:8080", "[::1]:8080"),
        ("ipv6:%5Bfd00:0:0::5%5D:50051", "[fd00:0:0::5]:50051"),
        ("unix:/tmp/x.sock", "unix:/tmp/x.sock"),
        ("", ""),
    ],
)
def test_parse_address(target: str, endpoint: str) -> None:
    assert parse_address(target) == endpoint


def test_endpoint_key_writes_addresses_as_grpc_does() -> None:
    assert endpoint_key("10.0.0.1", 8080) == "10.0.0.1:8080"
    assert endpoint_key("::1", 80) == "[::1]:80"
    assert endpoint_key("fd00:0:0:0::5", 80) == "[fd00::5]:80"
    assert endpoint_key("not-an-ip", 80) == "not-an-ip:80"


def test_pick_metrics_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_PICK_METRICS, raising=False)
    assert resolve().pick_metrics is False
    for raw, want in (("1", True), ("On", True), ("yes", True), ("0", False), ("off", False)):
        monkeypatch.setenv(ENV_PICK_METRICS, raw)
        assert resolve().pick_metrics is want
        assert resolve(pick_metrics=not want).pick_metrics is (not want)  # the argument wins
    monkeypatch.setenv(ENV_PICK_METRICS, " ")
    assert resolve().pick_metrics is False
    monkeypatch.setenv(ENV_PICK_METRICS, "2")
    with pytest.raises(ValueError, match="KUBERESOLVER_PICK_METRICS='2' is not a boolean"):
        resolve()


def test_unreadable_channelz_yields_nothing_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from kuberesolver.client import channelz as _channelz
    from kuberesolver.client import metrics
    from kuberesolver.core.snapshot import Snapshot, TargetRef

    def changed_format() -> None:
        raise KeyError("channel")

    monkeypatch.setattr(_channelz, "top_channels", changed_format)
    snapshot = Snapshot(target=TargetRef("s", "ns", 80), revision=1, endpoints=())
    collector = metrics.PickCollector()
    collector.track("xds://kuberesolver/s", "s.ns:80", lambda: snapshot)
    assert collector.counts() == {}
    assert collector.counts() == {}
    warnings = [r for r in caplog.records if "channelz" in r.getMessage()]
    assert len(warnings) == 1
