"""The DNSBL query engine.

- ``engine``: ``DnsblEngine`` and the catalogue files it reads.
- ``exchange``: the UDP exchange (sockets, in-flight window, retries).
- ``wire``: DNS messages on the wire.
"""
