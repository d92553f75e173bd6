"""The kuberesolver operator: GrpcTargets and EndpointSlices in, rendered ConfigMaps out.

Run it with::

    kopf run -m kuberesolver.operator --all-namespaces --peering=kuberesolver \\
        --liveness=http://0.0.0.0:8080/healthz

Importing this package registers the handlers (:mod:`.handlers`) with kopf.
The pure logic lives in :mod:`.endpoints`, :mod:`.render`, :mod:`.configmap`,
:mod:`.reconcile`, :mod:`.status` and :mod:`.hub`; the settings in :mod:`.settings`.
"""

from kuberesolver.operator import handlers as handlers
from kuberesolver.operator.settings import Settings

__all__ = ["Settings", "handlers"]
