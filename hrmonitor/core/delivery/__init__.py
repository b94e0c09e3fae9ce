"""The delivery engine's decisions without I/O.

- ``envelope``: envelope addresses as the listener sees them, or the reply that refuses them.
- ``line_ends``: bare CR and bare LF, refused in commands and made CRLF in DATA.
- ``retry``: what an attempt's outcome means for a recipient: delivered, retry when, bounce.
- ``dsn``: RFC 3464 delivery status notifications for mail that could not be delivered.
"""
