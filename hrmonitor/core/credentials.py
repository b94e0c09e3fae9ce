"""SMTP AUTH credentials: scrypt password hashes and the auth file that holds them.

The auth file has one ``user:hash`` line per user (``#`` comments and blank
lines allowed); ``hrmonitor auth hash USER`` prints such a line. The hash is
``scrypt$N$r$p$salt$key`` with base64 salt and key, so the cost can be raised
later without breaking stored hashes. Which tenant a user relays for is config
(``[[tenants]] users``), not part of this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from hrmonitor.errors import ConfigError

SCHEME = "scrypt"
N, R, P = 2**14, 8, 1
KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: bytes, n: int = N, r: int = R, p: int = P) -> str:
    """The encoded scrypt hash of ``password``; give 16 random bytes of ``salt``."""
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded``; False for any malformed hash."""
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(key, validate=True)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def parse_auth_file(text: str, name: str) -> dict[str, str]:
    """``user -> encoded hash``; ConfigError naming the file and line for anything else."""
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        key = f"line {number}"
        if not sep or not user or not encoded.startswith(f"{SCHEME}$"):
            raise ConfigError(name, key, "expected 'user:scrypt$...' (see hrmonitor auth hash)")
        if encoded.count("$") != 5:
            raise ConfigError(name, key, "the scrypt hash is malformed")
        if user in users:
            raise ConfigError(name, key, f"user {user!r} is listed twice")
        users[user] = encoded
    return users
