"""The client library: channels (:mod:`.channel`, :mod:`.aio`), their settings, metrics
and targets, the drainable server (:mod:`.server`), and the sources of snapshots
(:mod:`.sources`). The public surface is :mod:`kuberesolver`, :mod:`kuberesolver.aio`,
:mod:`kuberesolver.server` and :mod:`kuberesolver.direct`.
"""
