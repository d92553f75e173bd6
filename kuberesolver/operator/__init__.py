"""The kuberesolver operator: GrpcTargets and EndpointSlices in, rendered ConfigMaps out.

Run it (the image's default command; see manifests/deployment.yaml)::

    kopf run -m kuberesolver.operator --all-namespaces --peering=kuberesolver \\
        --liveness=http://0.0.0.0:8080/healthz

Importing this package registers the handlers (:mod:`.handlers`) with kopf.
The pure logic lives in :mod:`.endpoints`, :mod:`.render`, :mod:`.configmap`,
:mod:`.reconcile`, :mod:`.status` and :mod:`.hub`; the settings in :mod:`.settings`.

What it does, for each GrpcTarget (``kubectl get gt``):

- merges every EndpointSlice of the Service (label ``kubernetes.io/service-name``)
  into one sorted, de-duplicated snapshot, for the Service port asked for
  (by name, number, or the first one), each endpoint on its slice's targetPort;
- writes ConfigMap ``spec.configMapName`` (default: the GrpcTarget's name)
  with ``endpoints.json`` (:mod:`kuberesolver.snapshot`), ``service-config.json``
  and the keys of ``spec.templates`` (Jinja2, sandboxed). The ConfigMap is
  owned by the GrpcTarget: deleting the GrpcTarget deletes it, with no
  finalizer involved. A ConfigMap it does not own is never overwritten;
- writes only when the content changes, at most once per coalescing window
  per target; ``revision`` goes up exactly when the endpoints change;
- reports ``status`` (observedGeneration, readyEndpoints, totalEndpoints,
  revision, configMapName, lastUpdateTime) and the conditions Ready,
  ServiceFound and Rendered, with Events on problems and on first publication.

Bad input keeps the last good ConfigMap: an invalid spec, an unknown port, a
failing template (Rendered=False), output over the 1 MiB ConfigMap limit, a
failed write. A missing Service is the truth, so it publishes an empty snapshot
(ServiceFound=False).

A Service in another namespace is published only with that Service's consent:
the annotation ``kuberesolver.io/allowed-namespaces: "ns-a,ns-b"`` (or ``"*"``)
naming the GrpcTarget's namespace. See manifests/examples/cross-namespace.yaml.

Settings (environment variables, units in the names; :mod:`.settings`):
``KUBERESOLVER_DEBOUNCE_MS`` (300), ``KUBERESOLVER_METRICS_PORT`` (0: off),
``KUBERESOLVER_RESYNC_S`` (300), ``KUBERESOLVER_PEERING_PRIORITY`` (random),
``KUBERESOLVER_PEERING_LIFETIME_S`` (60).

Metrics (:mod:`.metrics`): ``kuberesolver_operator_targets``,
``kuberesolver_operator_endpoints{namespace,target,state}``,
``kuberesolver_operator_configmap_writes_total{operation}``,
``kuberesolver_operator_reconcile_seconds`` (histogram),
``kuberesolver_operator_errors_total{kind}``.

Optional admission webhook (:mod:`.webhook`, ``KUBERESOLVER_WEBHOOK_PORT``):
Pods labelled ``kuberesolver.io/inject: "true"`` and annotated
``kuberesolver.io/targets: "a,b"`` get those GrpcTargets' ConfigMaps mounted.

High availability: run two replicas with ``--peering=kuberesolver``; kopf
peering keeps one active (each replica takes a random priority), and the
other takes over when it goes away.
"""

from kuberesolver.operator import handlers as handlers
from kuberesolver.operator import webhook as webhook
from kuberesolver.operator.settings import Settings

__all__ = ["Settings", "handlers", "webhook"]
