"""xDS: the resources kuberesolver serves, the ADS servers that serve them, and bootstraps.

- :mod:`.resources`: the Listener, RouteConfiguration, Cluster and
  ClusterLoadAssignment builders, shared by both servers;
  :mod:`.channel_resources`: the client's channel spec and its resource names.
- :mod:`.ads_core`: the ADS protocol of one stream, without I/O (subscriptions,
  versions, nonces, ACK and NACK per resource); both servers are transports on it.
- :mod:`.bootstrap`: the one bootstrap builder (standard library only).
- :mod:`.ads_inprocess`: the client's in-process ADS server (sync grpc, on a
  private unix socket), that feeds grpc's own xDS client;
  :mod:`.bootstrap_inprocess`: publishes the process-wide bootstrap that points
  at it (and the operator's authority, for ``source="operator"``);
  :mod:`.serving`: the server-side Listener of :mod:`kuberesolver.server`;
  :mod:`.orca`: backend load reports.
- :mod:`.ads_aio`: the operator's ADS server on grpc.aio, for grpc clients in any
  language; :mod:`.store` (:class:`~.store.XdsStore`, the targets it serves,
  keyed by ``(namespace, name)``), :mod:`.metrics`, :mod:`.settings`,
  :mod:`.auth` (who may see a target: TokenReview and SubjectAccessReview
  bodies, the decision cache; the host hands :class:`~.ads_aio.AdsServer` an
  ``authorizer``); :data:`.bootstrap.DEFAULT_AUTHORITY` is its authority.

Importing this package loads nothing heavy; its modules do (grpc, xds-protos,
prometheus-client), except :mod:`.bootstrap`, :mod:`.settings` and :mod:`.auth`
(standard library only).

How a host (the operator) runs :mod:`.ads_aio`, on its own event loop::

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
