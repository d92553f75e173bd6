"""The operator's pure logic: spec parsing, the reconcile plan, rendering, ConfigMap and
status bodies, Pod readiness. No I/O: no kopf, no kubernetes client.
"""
