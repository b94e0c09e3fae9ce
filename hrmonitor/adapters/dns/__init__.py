"""DNS adapters built on dnspython: the DNSBL query engine (``dnsbl``) and mail lookups (``mail``).

The two modules share nothing but dnspython; import the one you need.
"""
