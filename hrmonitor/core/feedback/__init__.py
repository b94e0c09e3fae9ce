"""Remote SMTP replies as evidence about a source IP.

- ``replies``: a reply -> provider pauses and blocklist mentions; the pause tracker.
- ``rules``: the reply pattern file format (``rules/feedback.toml``), validation, layering.
"""
