"""The in-process xDS route: resource builders, the ADS server and the bootstrap.

Private: the public surface is :mod:`kuberesolver`.
"""
