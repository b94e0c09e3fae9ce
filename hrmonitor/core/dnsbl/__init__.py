"""DNS blocklists without I/O.

- ``catalogue``: what each list's return codes mean, which zones are dead (``rules/dnsbl.toml``).
- ``answers``: query names (IPv4, IPv6 nibbles), answer classification, zone self-tests,
  listing confirmation and the query budget.
- ``check``: the Nagios-style verdict of one sweep, for ``hrmonitor check``.
"""
