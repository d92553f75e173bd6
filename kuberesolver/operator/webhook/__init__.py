"""The optional admission webhook (:mod:`.admission`), its TLS (:mod:`.tls`, :mod:`.certs`)
and the xDS bootstrap it injects (:mod:`.xds_inject`).
"""
