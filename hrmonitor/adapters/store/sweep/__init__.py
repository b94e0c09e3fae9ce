"""A sweep's store writes, batched.

- ``record``: ``record_sweep``, the plan of one sweep's writes.
- ``reads``, ``writes`` and ``rows``: the reads before it, its statements, an answer's row.
"""
