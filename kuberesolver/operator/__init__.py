"""The kuberesolver operator: GrpcTargets and EndpointSlices in, rendered ConfigMaps out.

Run it (the image's default command; see manifests/deployment.yaml)::

    kopf run -m kuberesolver.operator --all-namespaces --standalone \\
        --liveness=http://0.0.0.0:8080/healthz

Importing this package registers the handlers (:mod:`.handlers`) with kopf,
and the admission webhook's (:mod:`.webhook.admission`) when it is on. The
pure logic lives in :mod:`.logic` (spec, reconcile plan, render, ConfigMap,
status, Pod readiness); the effects in :mod:`.runtime` (the watches, the
coalescing hub, one worker per target, the Lease, the status and Event
writers, the API calls, and ``Runtime``, what the handlers share); templates
render in :mod:`.sandbox`; the optional webhook in :mod:`.webhook` and the
optional xDS feed in :mod:`.xds`; the settings in :mod:`.settings`.

What it does, for each GrpcTarget (``kubectl get gt``):

- merges every EndpointSlice of the Service (label ``kubernetes.io/service-name``)
  into one sorted, de-duplicated snapshot, for the Service port asked for
  (by name, number, or the first one), each endpoint on its slice's targetPort;
- writes ConfigMap ``spec.configMapName`` (default: the GrpcTarget's name)
  with ``endpoints.json`` (:mod:`kuberesolver.core.snapshot`), ``service-config.json``
  and the keys of ``spec.templates`` (Jinja2, sandboxed). The ConfigMap is
  owned by the GrpcTarget: deleting the GrpcTarget deletes it, with no
  finalizer involved. A ConfigMap it does not own is never overwritten;
- writes only when the content changes, at most once per coalescing window
  per target; ``revision`` goes up exactly when the endpoints change;
- reports ``status`` (observedGeneration, readyEndpoints, totalEndpoints,
  revision, configMapName, lastUpdateTime) and the conditions Ready (True only
  when the ConfigMap holds the current snapshot with a ready endpoint),
  ServiceFound and Rendered, with Events (from ``kuberesolver``) on problems
  and when it becomes Ready.

Bad input keeps the last good ConfigMap: an invalid spec, an unknown port, a
failing template (Rendered=False), output over the 1 MiB ConfigMap limit, a
failed write. A missing Service is the truth, so it publishes an empty snapshot
(ServiceFound=False); so does a Service in another namespace without consent,
or whose consent was withdrawn.

A Service in another namespace is published only with that Service's consent:
the annotation ``kuberesolver.io/allowed-namespaces: "ns-a,ns-b"`` (or ``"*"``)
naming the GrpcTarget's namespace. See manifests/examples/cross-namespace.yaml.

Settings (environment variables, units in the names; :mod:`.settings`):
``KUBERESOLVER_WRITE_BUDGET`` (``5/1500ms``: the first 5 changes after a quiet
period are written at once, then one write per 300 ms while the target keeps
changing; ``1/300ms`` is a fixed window; ``KUBERESOLVER_DEBOUNCE_MS=N`` is its
deprecated alias for ``1/Nms``), ``KUBERESOLVER_METRICS_PORT`` (0: off),
``KUBERESOLVER_RESYNC_S`` (300), ``KUBERESOLVER_LEASE_DURATION_S`` (8),
``KUBERESOLVER_LEASE_RETRY_S`` (2), ``KUBERESOLVER_LEASE_NAME``,
``KUBERESOLVER_LEASE_NAMESPACE``, ``KUBERESOLVER_IDENTITY``,
``KUBERESOLVER_WATCH_NAMESPACES`` (namespaced mode: every list and watch per
namespace, with kopf's ``--namespace`` per namespace instead of ``--all-namespaces``).
Templates render in worker processes (:mod:`.sandbox.render_pool`), never here:
``KUBERESOLVER_RENDER_WORKERS`` (2), and per render ``KUBERESOLVER_RENDER_CPU_S``
(2), ``KUBERESOLVER_RENDER_MEMORY_MIB`` (256) and ``KUBERESOLVER_RENDER_TIMEOUT_MS``
(5000); a breach is ``Rendered=False`` with reason ``RenderTimeout`` or
``RenderMemoryLimit``, and the last good ConfigMap stays.

Metrics (:mod:`.runtime.metrics`, every one listed there): ``kuberesolver_operator_targets``,
``kuberesolver_operator_endpoints{namespace,target,state}`` (``ready``, ``not_ready``,
``terminating``: they sum to every endpoint),
``kuberesolver_operator_configmap_writes_total{operation}``,
``kuberesolver_operator_configmap_write_errors_total{reason}``,
``kuberesolver_operator_reconcile_seconds`` (histogram),
``kuberesolver_operator_errors_total{kind}``, ``kuberesolver_operator_leader``,
``kuberesolver_operator_build_info{version}``, the webhook's
``kuberesolver_operator_admissions_total{outcome,reason}`` and
``kuberesolver_operator_admission_seconds`` and
``kuberesolver_operator_webhook_certificate_expiry_seconds``,
``kuberesolver_operator_xds_denials_total{reason}``, and the process, platform and
GC collectors. ``KUBERESOLVER_LOG_FORMAT`` (``plain``, ``full``, ``json``) is
``kopf run --log-format`` for where the command line is fixed.

A Pod the webhook admits without what it asked for (:mod:`.webhook.skips`) is a
warning in the admission response, a log line, a count in
``kuberesolver_operator_admissions_total{outcome="skipped"}`` and an aggregated
Warning Event ``InjectionSkipped`` about its owner.

Optional admission webhook (:mod:`.webhook.admission`, ``KUBERESOLVER_WEBHOOK_PORT``):
Pods labelled ``kuberesolver.io/inject: "true"`` and annotated
``kuberesolver.io/targets: "a,b"`` get those GrpcTargets' ConfigMaps mounted;
for a headless Service's target, the projector as a native sidecar
(:mod:`.webhook.projector_inject`; its image ``KUBERESOLVER_PROJECTOR_IMAGE``,
``KUBERESOLVER_PROJECTOR_IMAGE_PULL_POLICY``: ``IfNotPresent``).
Its TLS (:mod:`.webhook.tls`, :mod:`.webhook.certs`): by default a CA and a
serving certificate in Secret ``kuberesolver-webhook-tls``, rotated by the
Lease leader, which patches the CA bundle into the configuration; every
replica reloads a renewed certificate without a restart.
``KUBERESOLVER_WEBHOOK_TLS`` (``self`` | ``files``),
``KUBERESOLVER_WEBHOOK_CERT_DIR``, ``KUBERESOLVER_WEBHOOK_CERT_LIFETIME_S``
(90 days), ``KUBERESOLVER_WEBHOOK_CA_LIFETIME_S`` (10 years),
``KUBERESOLVER_WEBHOOK_TLS_CHECK_S`` (60).

Optional xDS server (:mod:`.xds.feed`, ``KUBERESOLVER_XDS_ADDRESS``): every
replica serves the GrpcTargets over ADS from its own watches, as
``xds://xds.kuberesolver.io/<name>.<namespace>`` for grpc clients in any language;
with ``KUBERESOLVER_XDS_AUTH=token`` a client sees only the targets whose
ConfigMap its ServiceAccount may read (:mod:`.xds.auth`).

High availability: run two replicas; both watch, and only the holder of the
``coordination.k8s.io`` Lease writes (:mod:`.runtime.leader`). The other takes over
when the Lease is released (a clean exit) or expires (8 s by default).
"""

from kuberesolver.operator import handlers as handlers
from kuberesolver.operator.settings import Settings
from kuberesolver.operator.webhook import admission as admission

__all__ = ["Settings", "admission", "handlers"]
