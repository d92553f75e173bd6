"""Direct mode: the client lists and watches EndpointSlices itself (:mod:`kuberesolver.direct`)."""
