"""The test server's Pods and Deployments for the node tests, and plain HTTP to them.

The image is the static Go server from testenv/gomod/node-images: ``/healthz``,
``/name`` (the Pod's hostname) and ``/files/...`` (files under ``FILES_DIR``).
"""

from __future__ import annotations

import http.client
from typing import Any

PORT = 8080


def server_container(image: str, files_dir: str = "/config") -> dict[str, Any]:
    """The test server's container, Ready once ``/healthz`` answers."""
    return {
        "name": "server",
        "image": image,
        "imagePullPolicy": "Never",
        "env": [{"name": "FILES_DIR", "value": files_dir}],
        "ports": [{"containerPort": PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": PORT},
            "periodSeconds": 1,
        },
    }


def deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    """A Deployment whose replicas spread one per node (hard constraint)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "DoNotSchedule",
                            "labelSelector": {"matchLabels": labels},
                        }
                    ],
                    "containers": [server_container(image)],
                },
            },
        },
    }


def pod_with_config_map(
    name: str, image: str, config_map: str, node: str | None = None
) -> dict[str, Any]:
    """A test server Pod that mounts ConfigMap ``config_map`` at /config (kubelet's mount)."""
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": 2,
        "containers": [
            {
                **server_container(image),
                "volumeMounts": [{"name": "config", "mountPath": "/config"}],
            }
        ],
        "volumes": [{"name": "config", "configMap": {"name": config_map}}],
    }
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def http_get(ip: str, path: str, timeout_s: float = 2.0, port: int = PORT) -> tuple[int, str]:
    """``GET http://ip:port/path`` straight to a Pod IP (no proxy): status and body."""
    conn = http.client.HTTPConnection(ip, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()
