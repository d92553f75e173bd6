"""The operator's controller runtime: the watches (:mod:`.informer`, the shared reflector
over :mod:`.collection`), the coalescing hub, one worker per target, the Lease, the status
and Event writers and the API calls.
"""
