"""A stalled backend beside two good ones, with the client's default settings.

One of three endpoints completes the HTTP/2 handshake and then never sends
another byte (testenv.silent.StalledHttp2Server: no headers, no data, no PING
acknowledgement); the two others are real grpc servers with default settings
(in a child process). Open-loop load of ``--rate`` calls/s with a 1 s
deadline, plus ``--no-deadline-callers`` threads that call in a loop without a
deadline, for ``--duration-s``.

``--settings old`` runs the previous defaults instead (keepalive 10 s with
grpc's 60 s ping timeout, no outlier detection unless the snapshot asks),
for comparison.

The last line is one JSON object (json.dumps in _common.emit): the share of 1 s-deadline calls that
succeeded from 10 s on (``ok_from_10s``) and over windows ending at 30, 60,
100, 150 s ...; the seconds in which calls failed, with counts (each one is a
re-admission of the stalled endpoint after its ejection), with how far the
sender fell behind its schedule then (a stalled bench process, not the
client, when large); the longest wait
of a call without a deadline, and how many there were.
"""

from __future__ import annotations

import collections
import contextlib
import tempfile
import threading
import time
from pathlib import Path

from _common import Fleet, emit, options, publish  # type: ignore[import-not-found]

GOOD = ("127.0.0.2", "127.0.0.3")


def main() -> None:
    args = options(
        __doc__.split("\n")[0],
        duration_s=(float, 120.0),
        rate=(float, 100.0),
        no_deadline_callers=(int, 4),
        settings=(str, "default"),
    )
    old = args.settings == "old"
    import grpc

    import kuberesolver
    from testenv.silent import StalledHttp2Server

    stalled = StalledHttp2Server("127.0.0.4")
    with Fleet(GOOD, workers=16) as fleet, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        endpoints = [(h, fleet.ports[h]) for h in GOOD] + [(stalled.host, stalled.port)]
        publish(root / "bench.ns", endpoints, 1)
        settings: dict[str, object] = {}
        extra: list[tuple[str, int]] = []
        if old:
            settings = {"keepalive_ms": 10_000, "outlier_detection": False}
            extra = [("grpc.http2.ping_timeout_ms", 60_000)]
        channel = kuberesolver.insecure_channel(
            "kubernetes:///bench.ns:grpc", extra, snapshot_dir=root, **settings
        )
        call = channel.unary_unary("/kr.bench.Echo/Unary")
        waits: list[tuple[float, float]] = []
        lock = threading.Lock()
        start = time.monotonic()

        def no_deadline() -> None:
            while time.monotonic() - start < args.duration_s:
                began = time.monotonic()
                with contextlib.suppress(grpc.RpcError):
                    call(b"")
                with lock:
                    waits.append((began - start, time.monotonic() - began))

        callers = [
            threading.Thread(target=no_deadline, daemon=True)
            for _ in range(args.no_deadline_callers)
        ]
        for c in callers:
            c.start()
        sent: list[tuple[float, grpc.Future]] = []
        lag: collections.Counter[int] = collections.Counter()  # ms behind the schedule, per s
        n = 0
        while (now := time.monotonic() - start) < args.duration_s:
            sent.append((now, call.future(b"", timeout=1.0)))
            lag[int(now)] = max(lag[int(now)], round((now - n / args.rate) * 1000))
            n += 1
            pause = start + n / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        codes = [(t, f.code()) for t, f in sent]
        for c in callers:
            c.join(90)
        still_waiting = sum(1 for c in callers if c.is_alive())
        channel.close()
    stalled.stop()

    def ok_share(until_s: float) -> float:
        window = [c for t, c in codes if 10 <= t < until_s]
        return round(sum(1 for c in window if c == grpc.StatusCode.OK) / max(1, len(window)), 4)

    failed_at = collections.Counter(int(t) for t, c in codes if c != grpc.StatusCode.OK and t >= 10)
    emit(
        {
            "settings": "old" if old else "default",
            "duration_s": args.duration_s,
            "rate": args.rate,
            "calls_from_10s": sum(1 for t, _ in codes if t >= 10),
            "ok_from_10s": ok_share(args.duration_s),
            "ok_windows": {
                str(x): ok_share(x) for x in (30, 60, 100, 150, 200, 300) if x <= args.duration_s
            },
            "failed_seconds_from_10s": {str(k): v for k, v in sorted(failed_at.items())},
            "sender_lag_ms_in_those_seconds": {str(k): lag[k] for k in sorted(failed_at)},
            "ok_before_10s": round(
                sum(1 for t, c in codes if t < 10 and c == grpc.StatusCode.OK)
                / max(1, sum(1 for t, _ in codes if t < 10)),
                4,
            ),
            "no_deadline_calls": len(waits),
            "no_deadline_longest_s": round(max((w for _, w in waits), default=0.0), 2),
            "no_deadline_still_waiting": still_waiting,
            "stalled_calls": stalled.calls,
            "stalled_connections": stalled.connections,
        }
    )


if __name__ == "__main__":
    main()
