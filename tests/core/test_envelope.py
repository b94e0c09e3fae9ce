"""Envelope address judgement: relay tricks refused, valid mailboxes accepted."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.delivery.envelope import (
    Mailbox,
    NullPath,
    Refusal,
    address_literal,
    literal_refusal,
    parse_path,
    split_path,
)


@pytest.mark.parametrize(
    "path",
    [
        "user%other.test@relay.test",
        '"user@other.test"@relay.test',
        "@relay.test:user@other.test",
        "@a.test,@b.test:user@other.test",
        "user@other.test@relay.test",
        "other.test!user@relay.test",
        '"user%other.test"@relay.test',
    ],
)
def test_open_relay_address_forms_are_refused_as_relaying_denied(path: str) -> None:
    verdict = parse_path(path)
    assert isinstance(verdict, Refusal)
    assert (verdict.code, verdict.status) == (550, "5.7.1")
    assert verdict.reply.startswith("550 5.7.1 relaying denied")


@pytest.mark.parametrize("path", ["a\r\nRCPT TO:<x@y.test>@b.test", "a\nb@c.test", "a\0@b.test"])
def test_header_injection_characters_get_501(path: str) -> None:
    verdict = parse_path(path)
    assert isinstance(verdict, Refusal)
    assert verdict.code == 501


@pytest.mark.parametrize(
    "path",
    [
        "nodomain",
        "a@",
        "a@-bad-.test",
        "a b@c.test",
        "a@[999.1.1.1]",
        "a@[::1]",  # an IPv6 literal carries its IPv6: tag (RFC 5321 4.1.3)
        "a..b@c.test",
        "x" * 65 + "@c.test",
    ],
)
def test_invalid_addresses_get_553(path: str) -> None:
    verdict = parse_path(path)
    assert isinstance(verdict, Refusal)
    assert verdict.code == 553


@pytest.mark.parametrize(
    ("path", "local", "domain"),
    [
        ("b@rcpt.test", "b", "rcpt.test"),
        ("First.Last+tag@Example.TEST", "First.Last+tag", "example.test"),
        ('"john doe"@example.test', '"john doe"', "example.test"),
        ("x@[127.0.0.1]", "x", "[127.0.0.1]"),
    ],
)
def test_valid_mailboxes_are_accepted_with_lowercased_domain(
    path: str, local: str, domain: str
) -> None:
    assert parse_path(path) == Mailbox(local, domain)


def test_null_path_only_where_allowed() -> None:
    assert parse_path("", allow_null=True) == NullPath()
    assert isinstance(parse_path(""), Refusal)


def test_non_ascii_address_needs_smtputf8() -> None:
    refused = parse_path("jörg@bücher.test")
    assert isinstance(refused, Refusal)
    assert refused.status == "5.6.7"
    assert parse_path("jörg@bücher.test", utf8=True) == Mailbox("jörg", "bücher.test")


def test_split_path_separates_brackets_and_parameters() -> None:
    assert split_path("<a@b.test> SIZE=100 BODY=8BITMIME") == ("a@b.test", "SIZE=100 BODY=8BITMIME")
    assert split_path("a@b.test") == ("a@b.test", "")
    assert split_path("<>") == ("", "")
    assert isinstance(split_path("<a@b.test"), Refusal)


@given(st.text(max_size=80))
def test_any_text_is_judged_without_crashing_and_accepted_addresses_are_clean(text: str) -> None:
    verdict = parse_path(text, utf8=True)
    assert isinstance(verdict, Mailbox | Refusal)
    if isinstance(verdict, Mailbox):
        assert not any(ch in verdict.address for ch in "\r\n\0%!")
        assert verdict.address.count("@") == 1 or verdict.local.startswith('"')


@pytest.mark.parametrize(
    ("domain", "address"),
    [
        ("[192.0.2.1]", "192.0.2.1"),
        ("[IPv6:2001:DB8::1]", "2001:db8::1"),
        ("[ipv6:::1]", "::1"),
        ("[::1]", None),
        ("[IPv6:192.0.2.1]", "192.0.2.1"),
        ("[mx.test]", None),
        ("mx.test", None),
        ("192.0.2.1", None),
    ],
)
def test_address_literal_is_the_ip_of_a_bracketed_literal(domain: str, address: str | None) -> None:
    assert address_literal(domain) == address


def test_literal_recipients_are_refused_unless_delivery_is_on_and_can_reach_them() -> None:
    v4 = frozenset({4})
    refused = literal_refusal("192.0.2.1", deliver=False, families=v4)
    assert refused is not None
    assert refused.reply.startswith("550 5.7.1 address-literal recipients are not accepted")
    assert literal_refusal("192.0.2.1", deliver=True, families=v4) is None
    no_v6 = literal_refusal("2001:db8::1", deliver=True, families=v4)
    assert no_v6 is not None
    assert no_v6.reply == "550 5.4.4 no IPv6 source address to reach [2001:db8::1]"
    for nowhere in ("0.0.0.0", "224.0.0.1", "255.255.255.255", "::"):
        refusal = literal_refusal(nowhere, deliver=True, families=frozenset({4, 6}))
        assert refusal is not None
        assert refusal.code == 550
