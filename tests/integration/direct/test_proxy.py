"""``new_insecure_k8s_client``: plain HTTP to a proxy that authenticates, as ``kubectl proxy`` does.

The proxy here is a small stand-in for ``kubectl proxy``: it adds the client
ServiceAccount's token (bound to the shipped Role) and streams the answer
back chunk by chunk, so the watch goes through it too. The client uses a
scheme of its own, registered with a Builder.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import kuberesolver
from kuberesolver.direct import unregister
from testenv import ControlPlane
from testenv.wait import until
from tests.integration.direct.world import Pods, reached

pytestmark = pytest.mark.integration

_HOP_BY_HOP = {"connection", "transfer-encoding", "content-length", "keep-alive"}


def proxy(control_plane: ControlPlane, token: str) -> ThreadingHTTPServer:
    context = ssl.create_default_context(cafile=str(control_plane.ca.cert_path))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            upstream = http.client.HTTPSConnection(
                "127.0.0.1", control_plane.apiserver_port, context=context, timeout=120
            )
            upstream.request("GET", self.path, headers={"Authorization": f"Bearer {token}"})
            answer = upstream.getresponse()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in _HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while chunk := answer.read1(65536):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client went away
            finally:
                upstream.close()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def proxied(control_plane: ControlPlane, token_file: Path) -> Iterator[kuberesolver.Builder]:
    server = proxy(control_plane, token_file.read_text())
    k8s = kuberesolver.new_insecure_k8s_client(f"http://127.0.0.1:{server.server_address[1]}")
    yield kuberesolver.register(kuberesolver.Builder(k8s, "k8sproxy"))
    unregister("k8sproxy")
    k8s.close()
    server.shutdown()


def test_the_insecure_client_behind_a_proxy_with_a_scheme_of_its_own(
    proxied: kuberesolver.Builder, pods: Pods, namespace: str
) -> None:
    pods.start(2)
    first = pods.add(0)
    pods.wait_ready(1)
    with kuberesolver.insecure_channel(f"k8sproxy:///greeter.{namespace}:grpc") as channel:
        until(lambda: reached(channel, 5) == {first}, timeout_s=60, message="the pod reached")
        second = pods.add(1)
        until(
            lambda: second in reached(channel, 10),
            timeout_s=60,
            message="the pod added later reached (the watch goes through the proxy)",
        )
