"""The operator-side xDS server: GrpcTargets served over ADS to grpc clients in any language.

- :mod:`.store`: :class:`~.store.XdsStore`, the targets to serve, keyed by
  ``(namespace, name)``; the operator calls ``put`` and ``remove``.
- :mod:`.server`: :class:`~.server.AdsServer`, state-of-the-world ADS on grpc.aio.
- :mod:`.bootstrap`: the grpc xDS bootstrap that points clients at it (standard
  library only, for ``python -m kuberesolver bootstrap``).
- :mod:`.metrics`: its Prometheus metrics.

Importing this package loads nothing heavy; its modules do (grpc, xds-protos,
prometheus-client).
"""
