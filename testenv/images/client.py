"""The test client image: calls one target through kuberesolver at a steady rate.

Each call prints one JSON line: ``{"t": <unix s>, "ok": true, "pod": "<name>",
"code": "OK", "ms": <latency>}`` (``pod`` is null when the call failed). On
SIGTERM, or after ``CALLS`` calls, it waits for the calls in flight and prints
``{"summary": {"calls": n, "failed": n, "pods": {"<name>": n, ...}}}``.

Environment: ``TARGET`` (required, e.g. ``kubernetes:///greeter.default:grpc``),
``RATE`` (calls per second, default 10), ``CALLS`` (0: until SIGTERM),
``TIMEOUT_S`` (per call, default 1), ``METHOD`` (default
``/demo.Greeter/SayHello``), ``WAIT_FOR_READY`` (``1``: calls wait for a
connection), ``DIRECT`` (``1``: direct mode, the client watches the API).
Only kuberesolver's public API is used.

Two optional reports, each its own line: ``PICKS_EVERY_S`` (seconds, default
0: off) prints ``{"picks": {"<address:port>": n, ...}, "t": ...}`` that often,
the calls grpc's balancer sent to each endpoint so far (the library's pick
metrics: a ClusterIP there is the fallback); ``WATCH_SNAPSHOT`` (a snapshot
directory) prints ``{"snapshot": <revision>, "t": ...}`` whenever the
revision of its ``endpoints.json`` changes (read every 50 ms), so a bench
sees when kubelet (or the projector) refreshed the file in the container.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import Any

import grpc

import kuberesolver

_OUT = threading.Lock()


def say(doc: dict[str, Any]) -> None:
    """Print ``doc`` as one line, in one write: threads' lines never interleave."""
    with _OUT:
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()


class Tally:
    """The calls' results, printed as they complete."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.failed = 0
        self.pods: Counter[str] = Counter()
        self.in_flight = 0
        self.idle = threading.Condition(self.lock)

    def started(self) -> None:
        with self.lock:
            self.in_flight += 1

    def done(self, started: float, future: Any) -> None:
        ms = (time.monotonic() - started) * 1000
        code = future.code()
        pod = future.result().decode() if code == grpc.StatusCode.OK else None
        line = {
            "t": round(time.time(), 3),
            "ok": pod is not None,
            "pod": pod,
            "code": code.name,
            "ms": round(ms, 2),
        }
        if pod is None:
            line["error"] = future.details()
        with self.lock:
            self.calls += 1
            if pod is None:
                self.failed += 1
            else:
                self.pods[pod] += 1
            say(line)
            self.in_flight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout_s: float) -> None:
        with self.lock:
            self.idle.wait_for(lambda: self.in_flight == 0, timeout_s)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            return {"calls": self.calls, "failed": self.failed, "pods": dict(self.pods)}


def report_picks(registry: Any, every_s: float, stopping: threading.Event) -> None:
    """Print the calls per endpoint every ``every_s`` until ``stopping``."""
    while not stopping.wait(every_s):
        picks = {
            sample.labels["endpoint"]: int(sample.value)
            for metric in registry.collect()
            for sample in metric.samples
            if sample.name == "kuberesolver_picks_total"
        }
        say({"picks": picks, "t": round(time.time(), 3)})


def watch_snapshot(directory: str, stopping: threading.Event) -> None:
    """Print the revision of ``directory``'s snapshot each time it changes."""
    seen = None
    while not stopping.wait(0.05):
        try:
            with open(os.path.join(directory, "endpoints.json")) as f:
                revision = json.load(f).get("revision")
        except (OSError, ValueError):
            continue
        if revision != seen:
            seen = revision
            say({"snapshot": revision, "t": round(time.time(), 3)})


def main() -> int:
    target = os.environ.get("TARGET")
    if not target:
        print("client: set TARGET (e.g. kubernetes:///greeter.default:grpc)", file=sys.stderr)
        return 2
    rate = float(os.environ.get("RATE", "10"))
    limit = int(os.environ.get("CALLS", "0"))
    timeout_s = float(os.environ.get("TIMEOUT_S", "1"))
    method = os.environ.get("METHOD", "/demo.Greeter/SayHello")
    wait_for_ready = os.environ.get("WAIT_FOR_READY") == "1"
    if os.environ.get("DIRECT") == "1":
        kuberesolver.register_in_cluster()

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    tally = Tally()
    kwargs: dict[str, Any] = {}
    picks_every_s = float(os.environ.get("PICKS_EVERY_S", "0"))
    if picks_every_s > 0:
        from prometheus_client import CollectorRegistry

        kwargs.update(registry=CollectorRegistry(), pick_metrics=True)
        threading.Thread(
            target=report_picks, args=(kwargs["registry"], picks_every_s, stopping), daemon=True
        ).start()
    if os.environ.get("WATCH_SNAPSHOT"):
        threading.Thread(
            target=watch_snapshot, args=(os.environ["WATCH_SNAPSHOT"], stopping), daemon=True
        ).start()
    with kuberesolver.insecure_channel(target, **kwargs) as channel:
        call = channel.unary_unary(method)
        start = time.monotonic()
        sent = 0
        while not stopping.is_set() and (limit == 0 or sent < limit):
            tally.started()
            begun = time.monotonic()
            future = call.future(b"", timeout=timeout_s, wait_for_ready=wait_for_ready)
            future.add_done_callback(lambda f, begun=begun: tally.done(begun, f))
            sent += 1
            stopping.wait(max(0.0, start + sent / rate - time.monotonic()))
        tally.wait_idle(timeout_s + 5)
    say({"summary": tally.summary()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
