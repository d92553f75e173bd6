"""The user's world for the journey on a real node: manifests, the client's log, the operator.

The server is the test backend image (answers with its Pod's name, serves
grpc.health.v1 for kubelet's gRPC probe, drains before it stops); the client
is the test client image, which calls through ``kuberesolver.insecure_channel``
and prints one JSON line per call (testenv/images/client.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kubernetes import client

OPERATOR_NAMESPACE = "kuberesolver-system"
OPERATOR_SELECTOR = "app.kubernetes.io/instance=kuberesolver"
LEASE = "kuberesolver-operator"
CLIENT_RATE = 25
"""The client's calls per second."""


def server_yaml(image: str, replicas: int = 3) -> str:
    """Deployment ``server`` (Ready through a gRPC probe), its ClusterIP Service, its GrpcTarget."""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: server}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: server}}}}
  template:
    metadata: {{labels: {{app: server}}}}
    spec:
      terminationGracePeriodSeconds: 20
      containers:
        - name: server
          image: {image}
          imagePullPolicy: Never
          env:
            - {{name: GRACE_S, value: "2"}}
            - {{name: DRAIN_S, value: "5"}}
            - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
          ports: [{{name: grpc, containerPort: 50051}}]
          readinessProbe: {{grpc: {{port: 50051}}, periodSeconds: 1}}
          # Drain, then stop, once the endpoint is withdrawn (the README's server shutdown).
          lifecycle: {{preStop: {{sleep: {{seconds: 5}}}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: server}}
spec:
  selector: {{app: server}}
  ports: [{{name: grpc, port: 50051, targetPort: grpc}}]
---
apiVersion: kuberesolver.io/v1alpha1
kind: GrpcTarget
metadata: {{name: server}}
spec: {{service: server, port: grpc}}
"""


CALL_TIMEOUT_S = 5
"""Each call's deadline. A call with no reachable endpoint fails at once (no wait_for_ready),
so a short deadline catches nothing more; 1 s let a starved client on the loaded two-core
machine time out calls while the operator's Pods started (19 of 724, in bursts)."""


def client_env(target: str) -> str:
    return (
        f'[{{name: TARGET, value: "{target}"}}, {{name: RATE, value: "{CLIENT_RATE}"}},'
        f' {{name: TIMEOUT_S, value: "{CALL_TIMEOUT_S}"}}]'
    )


def client_yaml(image: str, namespace: str) -> str:
    """Deployment ``client``: labelled and annotated for the webhook, no volume of its own."""
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: client}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: client}}}}
  template:
    metadata:
      labels: {{app: client, kuberesolver.io/inject: "true"}}
      annotations: {{kuberesolver.io/targets: server}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
        - name: client
          image: {image}
          imagePullPolicy: Never
          env: {client_env(f"kubernetes:///server.{namespace}:grpc")}
"""


def lone_client_yaml(name: str, image: str, target: str, annotation: str | None) -> str:
    """A client Pod for ``target``: annotated ``annotation`` for the webhook (if given)."""
    annotations = f"annotations: {{kuberesolver.io/targets: {annotation}}}" if annotation else ""
    return f"""\
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}, kuberesolver.io/inject: "true"}}
  {annotations}
spec:
  terminationGracePeriodSeconds: 2
  containers:
    - name: client
      image: {image}
      imagePullPolicy: Never
      env: {client_env(target)}
"""


def mounted_client_yaml(name: str, image: str, target: str, config_map: str, namespace: str) -> str:
    """A client Pod that mounts ConfigMap ``config_map`` itself, where the client looks."""
    return (
        lone_client_yaml(name, image, target, None).replace(', kuberesolver.io/inject: "true"', "")
        + f"""\
      volumeMounts: [{{name: snapshot, mountPath: /var/run/kuberesolver/{config_map}.{namespace}}}]
  volumes: [{{name: snapshot, configMap: {{name: {config_map}}}}}]
"""
    )


@dataclass(frozen=True)
class Call:
    """One line of the client's log: a call's end."""

    t: float
    ok: bool
    pod: str | None
    error: str | None


def calls(core: client.CoreV1Api, namespace: str, pod: str) -> list[Call]:
    """Every call the client Pod ``pod`` has logged so far (other lines skipped)."""
    response: Any = core.read_namespaced_pod_log(pod, namespace, _preload_content=False)
    found = []
    for line in response.data.decode(errors="replace").splitlines():
        if not line.startswith('{"t":'):
            continue
        doc: dict[str, Any] = json.loads(line)
        found.append(Call(doc["t"], doc["ok"], doc["pod"], doc.get("error")))
    return found


def between(log: list[Call], start: float, end: float) -> list[Call]:
    return [c for c in log if start <= c.t <= end]


def ready_pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[Any]:
    """The Pods of ``selector`` that are Ready and not terminating."""
    pods: list[Any] = core.list_namespaced_pod(namespace, label_selector=selector).items
    return [
        p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    ]


def lease_holder(api: client.ApiClient) -> str | None:
    lease: Any = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, OPERATOR_NAMESPACE)
    holder: str | None = lease.spec.holder_identity
    return holder


def endpoints(api: client.ApiClient, namespace: str) -> list[str]:
    """The addresses the operator published for ``server`` (ConfigMap ``server``)."""
    cm = client.CoreV1Api(api).read_namespaced_config_map("server", namespace)
    snapshot = json.loads((cm.data or {}).get("endpoints.json", "{}"))
    return sorted(e["address"] for e in snapshot.get("endpoints", []) if e.get("ready", True))
