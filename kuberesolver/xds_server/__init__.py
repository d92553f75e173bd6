"""The operator-side xDS server: GrpcTargets served over ADS to grpc clients in any language.

- :mod:`.store`: :class:`~.store.XdsStore`, the targets to serve, keyed by
  ``(namespace, name)``; the operator calls ``put`` and ``remove``.
- :mod:`.server`: :class:`~.server.AdsServer`, state-of-the-world ADS on grpc.aio.
- :mod:`.bootstrap`: the grpc xDS bootstrap that points clients at it (standard
  library only, for ``python -m kuberesolver bootstrap``).
- :mod:`.metrics`: its Prometheus metrics.
- :mod:`.auth`: who may see a target (TokenReview and SubjectAccessReview bodies,
  the decision cache); the host hands :class:`~.server.AdsServer` an ``authorizer``.

Importing this package loads nothing heavy; its modules do (grpc, xds-protos,
prometheus-client), except :mod:`.bootstrap`, :mod:`.settings` and :mod:`.auth`.

How a host (the operator) runs it, on its own event loop::

    settings = XdsSettings.from_env()              # KUBERESOLVER_XDS_*
    store = XdsStore(settings.authority)
    server = AdsServer(store, metrics=XdsMetrics(registry),
                       method_timeouts=settings.method_timeouts)  # auto: not to C core
    creds = server_credentials(settings.cert_file, settings.key_file,
                               settings.client_ca_file or None) if settings.tls else None
    await server.start(settings.address, creds)
    ...
    store.put((namespace, name), snapshot)         # each snapshot it publishes, on
    store.remove((namespace, name))                # any thread; when a target goes
    ...
    await server.stop(grace_s=5)
"""
