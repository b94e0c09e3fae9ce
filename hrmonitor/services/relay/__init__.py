"""The relay: the acceptance pipeline behind the listener, and the queue runner.

- ``runner``: ``Relay``, which owns both.
- ``acceptance`` (route once at arrival, queue durably) with ``group_commit`` and ``routing``
  (the ``Router``).
- ``delivery`` (one attempt), ``source_ip`` (the IP for it), ``outcome`` (verdict rows and
  the DSN) and ``feedback`` (replies and exhausted pools, told to the rest of the daemon).
- ``settings``: the relay's settings and the shapes of what it is given.
"""
