"""Routing: which pool a message leaves from, and every reason why.

- ``decide``: message facts + rules -> a ``RouteDecision`` with its reasons.
- ``rules``: the routing rule file format (``rules/routing.toml``), validation, layering.
- ``spam_score``: scores from the operator's filter headers, and their removal.
- ``limits``: sending limits per envelope sender.
"""
