"""BATV prvs tagging and VERP encoding: what a returned bounce can prove about our own mail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.surge.verp import (
    BatvKeys,
    BatvVerdict,
    batv_expiry,
    batv_strip,
    batv_tag,
    batv_verify,
    day_number,
    verp_decode,
    verp_encode,
)

KEYS = BatvKeys({1: b"first secret", 2: b"second secret"}, current=2, valid_days=7)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

_atext = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_",
    min_size=1,
    max_size=20,
)
_domain = st.from_regex(r"\A[a-z0-9]{1,12}(\.[a-z0-9]{1,12}){0,2}\.[a-z]{2,6}\Z")
_address = st.builds(lambda local, domain: f"{local}@{domain}", _atext, _domain)
_moment = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)
)


def test_tag_has_the_draft_shape_key_day_and_six_hex() -> None:
    """The tag is prvs=K DDD SSSSSS= with the signing key and the expiry day's last 3 digits."""
    tagged = batv_tag("bounces@contoso.example", KEYS, NOW)
    prefix, tag, original = tagged.split("=", 2)
    assert prefix == "prvs"
    assert original == "bounces@contoso.example"
    assert tag[0] == "2"
    assert tag[1:4] == f"{(day_number(NOW) + 7) % 1000:03d}"
    assert len(tag) == 10
    int(tag[4:], 16)


def test_null_sender_is_never_tagged() -> None:
    """DSNs keep MAIL FROM:<>; tagging the null sender would break them."""
    assert batv_tag("", KEYS, NOW) == ""


def test_retagging_does_not_nest_tags() -> None:
    """Tagging an already tagged address replaces the tag instead of stacking a second one."""
    once = batv_tag("a@contoso.example", KEYS, NOW)
    twice = batv_tag(once, KEYS, NOW + timedelta(days=1))
    assert twice.count("prvs=") == 1
    assert batv_strip(twice) == "a@contoso.example"


@given(_address, _moment, st.integers(min_value=0, max_value=7 * 86400))
def test_tag_then_verify_round_trips_within_validity(
    address: str, at: datetime, later: int
) -> None:
    """A tag verifies as valid, with the original address back, up to valid_days later."""
    tagged = batv_tag(address, KEYS, at)
    check = batv_verify(tagged, KEYS, at + timedelta(seconds=later))
    assert check.verdict is BatvVerdict.VALID
    assert check.address == address
    assert check.key_number == 2


@given(_address, _moment, st.integers(min_value=9, max_value=400))
def test_tag_past_its_day_is_reported_expired(address: str, at: datetime, days: int) -> None:
    """After its expiry day (for hundreds of days) a good tag reads expired, not forged."""
    tagged = batv_tag(address, KEYS, at)
    check = batv_verify(tagged, KEYS, at + timedelta(days=days))
    assert check.verdict is BatvVerdict.EXPIRED
    assert check.address == address


def test_tag_expires_at_the_stated_instant() -> None:
    """batv_expiry names the first moment the tag no longer verifies."""
    tagged = batv_tag("a@contoso.example", KEYS, NOW)
    end = batv_expiry(NOW, KEYS)
    assert batv_verify(tagged, KEYS, end - timedelta(seconds=1)).verdict is BatvVerdict.VALID
    assert batv_verify(tagged, KEYS, end).verdict is BatvVerdict.EXPIRED


@given(
    _address, _moment, st.integers(min_value=4, max_value=9), st.sampled_from("0123456789abcdef")
)
def test_tampered_tag_fails(address: str, at: datetime, position: int, char: str) -> None:
    """Changing any signature digit makes the tag invalid."""
    tagged = batv_tag(address, KEYS, at)
    start = len("prvs=")
    tag = tagged[start : start + 10]
    if tag[position] == char:
        return
    forged = tagged[: start + position] + char + tagged[start + position + 1 :]
    assert batv_verify(forged, KEYS, at).verdict is BatvVerdict.INVALID


@given(_address, _address, _moment)
def test_tag_moved_to_another_address_fails(address: str, other: str, at: datetime) -> None:
    """A spammer copying a seen tag onto another address gets an invalid verdict."""
    if address.lower() == other.lower():
        return
    tag = batv_tag(address, KEYS, at).split("=")[1]
    assert batv_verify(f"prvs={tag}={other}", KEYS, at).verdict is BatvVerdict.INVALID


def test_changed_expiry_day_fails() -> None:
    """Extending the day field by hand breaks the signature."""
    tagged = batv_tag("a@contoso.example", KEYS, NOW)
    day = tagged[6:9]
    forged = tagged[:6] + f"{(int(day) + 100) % 1000:03d}" + tagged[9:]
    assert batv_verify(forged, KEYS, NOW).verdict is BatvVerdict.INVALID


def test_unknown_key_number_is_invalid_and_old_key_still_verifies() -> None:
    """Rotation: tags of a retired-but-listed key verify; a key number we never had does not."""
    old = BatvKeys({1: b"first secret"}, current=1)
    tagged = batv_tag("a@contoso.example", old, NOW)
    assert batv_verify(tagged, KEYS, NOW).verdict is BatvVerdict.VALID
    assert batv_verify("prvs=9" + tagged[6:], KEYS, NOW).verdict is BatvVerdict.INVALID


def test_untagged_address_is_untagged() -> None:
    """A bounce to a bare address of a tagging domain reads untagged (backscatter evidence)."""
    check = batv_verify("bounces@contoso.example", KEYS, NOW)
    assert check.verdict is BatvVerdict.UNTAGGED
    assert check.address == "bounces@contoso.example"


def test_verification_ignores_case_changes_on_the_way_back() -> None:
    """MTAs that upper-case the address do not turn our own bounces into forgeries."""
    tagged = batv_tag("Bounces@Contoso.example", KEYS, NOW)
    assert batv_verify(tagged.upper(), KEYS, NOW).verdict is BatvVerdict.VALID


@pytest.mark.parametrize(
    ("secrets", "current", "days"),
    [({}, 0, 7), ({10: b"x"}, 10, 7), ({1: b"x"}, 2, 7), ({1: b""}, 1, 7), ({1: b"x"}, 1, 500)],
)
def test_bad_key_sets_are_refused(secrets: dict[int, bytes], current: int, days: int) -> None:
    """Key numbers are digits with secrets, the signing key exists, validity < half a cycle."""
    with pytest.raises(ValueError, match="BATV"):
        BatvKeys(secrets, current, days)


def test_naive_time_is_refused() -> None:
    """Day numbers are UTC days; a naive time would shift them silently."""
    with pytest.raises(ValueError, match="timezone"):
        batv_tag("a@b.example", KEYS, datetime(2026, 1, 1))


@given(_atext.filter(lambda s: "+" not in s), _domain, _atext, _domain, _moment)
def test_verp_round_trips_through_batv(
    local: str, domain: str, rlocal: str, rdomain: str, at: datetime
) -> None:
    """verp_decode gives back sender and recipient, with or without a BATV tag on top."""
    sender, recipient = f"{local}@{domain}", f"{rlocal}@{rdomain}"
    encoded = verp_encode(sender, recipient)
    assert verp_decode(encoded) == (sender, recipient)
    assert verp_decode(batv_tag(encoded, KEYS, at)) == (sender, recipient)


def test_verp_handles_recipient_local_parts_with_plus_and_equals() -> None:
    """The recipient part is split at its last '=', so '+' and '=' in its local part survive."""
    encoded = verp_encode("bounces@contoso.example", "a+b=c@example.org")
    assert verp_decode(encoded) == ("bounces@contoso.example", "a+b=c@example.org")


def test_verp_refuses_ambiguous_senders_and_decodes_plain_addresses_as_none() -> None:
    """A sender with '+' cannot carry VERP; an ordinary address is not VERP."""
    with pytest.raises(ValueError, match="separator"):
        verp_encode("a+b@contoso.example", "x@example.org")
    with pytest.raises(ValueError, match="full addresses"):
        verp_encode("nobody", "x@example.org")
    assert verp_decode("bounces@contoso.example") is None
    assert verp_decode("a+tag@contoso.example") is None
