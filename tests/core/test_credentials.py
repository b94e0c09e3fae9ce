"""SMTP AUTH hashes verify only the right password; the auth file names bad lines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hrmonitor.core.credentials import hash_password, parse_auth_file, verify_password
from hrmonitor.errors import ConfigError

SALT = b"0123456789abcdef"


@settings(max_examples=10, deadline=None)
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_a_hash_verifies_its_password_and_no_other(password: str, other: str) -> None:
    encoded = hash_password(password, SALT, n=2**10)
    assert verify_password(password, encoded)
    assert verify_password(other, encoded) == (other == password)


def test_malformed_hashes_never_verify() -> None:
    for encoded in (
        "",
        "scrypt$",
        "md5$1$2$3$4$5",
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$1024$8$1$!!$!!",
    ):
        assert not verify_password("secret", encoded)


def test_the_auth_file_maps_users_to_hashes_and_names_bad_lines() -> None:
    encoded = hash_password("secret", SALT, n=2**10)
    users = parse_auth_file(f"# relay users\n\nalice:{encoded}\n", "auth.txt")
    assert users == {"alice": encoded}
    with pytest.raises(ConfigError, match=r"auth.txt: line 2: .*expected"):
        parse_auth_file(f"alice:{encoded}\nbob:plaintext\n", "auth.txt")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_auth_file(f"alice:{encoded}\nalice:{encoded}\n", "auth.txt")
