from __future__ import annotations

from pathlib import Path

import kuberesolver
from testenv.wait import until
from tests.client._support import UNARY, call_names, make_snapshot, publish


def test_balances_and_follows(backends, root: Path, snapdir: Path) -> None:
    a, b = backends("127.0.0.2"), backends("127.0.0.3")
    publish(snapdir, make_snapshot([a.endpoint()]))
    with kuberesolver.insecure_channel("kubernetes:///greeter.ns:grpc", snapshot_dir=root) as ch:
        call = ch.unary_unary(UNARY)
        assert call_names(call, 10, timeout=5) == {"127.0.0.2": 10}
        publish(snapdir, make_snapshot([a.endpoint(), b.endpoint()], revision=2))
        until(lambda: call(b"", timeout=5).startswith(b"127.0.0.3"), timeout_s=10)
        assert call_names(call, 10, timeout=5) == {"127.0.0.2": 5, "127.0.0.3": 5}
