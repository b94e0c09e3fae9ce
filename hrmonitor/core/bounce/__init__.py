"""Bounce classification: what kind of automatic message this is, and who failed why.

- ``classify``: a raw message -> a ``BounceReport`` (kind, failed recipients).
- ``mime``: a tolerant, bounded MIME reader.
- ``dsn``: RFC 3464 / RFC 6533 delivery-status bodies.
- ``text``: non-standard bounces, read from their text.
- ``recipient``: one failed recipient: action, status, reason, hard/soft.
- ``reason`` and ``rules``: the reason taxonomy and its pattern file (``rules/bounce.toml``).
"""
