"""The Kubernetes API seam: credentials (:mod:`.kubeconfig`) and the client protocol
direct mode watches through (:mod:`.client`), with its implementation on the
``kubernetes`` library (:mod:`.kubernetes_client`), loaded only when a client is made.
"""
