"""Where a channel's endpoints come from, side by side.

- :mod:`.file`: a snapshot mounted from the operator's ConfigMap (or the projector);
- :mod:`.api`: direct mode, the client's own watch of the API;
- :mod:`.operator`: the operator's xDS server, as an ``xds:`` target.
"""
