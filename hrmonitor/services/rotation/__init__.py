"""The rotation controller: feeds evidence to ``core.rotation`` and applies its decisions.

- ``controller``: the entry points and operator actions.
- ``eligibility``: the picker's view of the pools.
- ``replies``: the fast path, remote replies suspending an IP before anything awaits.
- ``apply`` (compare-and-set transitions) and ``effects`` (store writes, alerts, re-checks).
- ``membership``: IPs a reload adds to or removes from a pool, audited.
- ``store``: the store as rotation sees it.
"""
