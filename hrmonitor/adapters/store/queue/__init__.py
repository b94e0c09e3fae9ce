"""The mail queue in the store.

- ``repository``: ``QueueRepository``, what the relay uses.
- ``schema`` (tables), ``model`` (values), ``delivery`` (the runner's side: claims and
  outcomes) and ``reports`` (read-only queries).
"""
