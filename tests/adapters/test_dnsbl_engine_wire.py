"""The engine's small DNS codec agrees with dnspython, the reference, on everything it reads."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.TXT import TXT
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.adapters.dns.dnsbl import wire
from hrmonitor.core.dnsbl.answers import Rcode, Reply, query_name

ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
zones = st.sampled_from(["zen.spamhaus.org", "bl.test", "Key123.zen.dq.spamhaus.net"])
codes = st.integers(0x7F000000, 0x7FFFFFFF).map(
    lambda n: f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
)
texts = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


def our_query(qid: int, ip: str, zone: str, rdtype: int) -> bytes:
    prefix = wire.reversed_ip_labels(ip)
    return wire.query(qid, wire.question(prefix, wire.encode_labels(zone), rdtype))


@given(st.integers(0, 0xFFFF), ips, zones, st.sampled_from([wire.TYPE_A, wire.TYPE_TXT]))
def test_queries_are_byte_for_byte_what_dnspython_builds(
    qid: int, ip: str, zone: str, rdtype: int
) -> None:
    name = query_name(ip, zone).lower()
    reference = dns.message.make_query(name, dns.rdatatype.RdataType(rdtype), id=qid).to_wire()
    assert our_query(qid, ip, zone, rdtype) == reference


def reference_reply(response: dns.message.Message) -> Reply:
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return Reply(Rcode.NXDOMAIN)
    addresses = tuple(
        rd.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset
    )
    txt = tuple(
        b"".join(rd.strings).decode()
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rd in rrset
    )
    return Reply(Rcode.NOERROR, addresses, txt)


@given(ips, zones, st.lists(codes, max_size=5, unique=True), st.lists(texts, max_size=3))
def test_answers_parse_as_dnspython_reads_them(
    ip: str, zone: str, addresses: list[str], strings: list[str]
) -> None:
    name = query_name(ip, zone).lower()
    query = dns.message.make_query(name, "A", id=7)
    response = dns.message.make_response(query)
    if addresses:
        owner = dns.name.from_text(name)
        response.answer.append(dns.rrset.from_text_list(owner, 60, "IN", "A", addresses))
    if strings:
        rrset = dns.rrset.RRset(dns.name.from_text(name), dns.rdataclass.IN, dns.rdatatype.TXT)
        for text in strings:
            rrset.add(TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [text.encode()]), 60)
        response.answer.append(rrset)
    if not addresses and not strings:
        response.set_rcode(dns.rcode.NXDOMAIN)
    data = response.to_wire()  # dnspython compresses owner names: pointers are exercised
    key = wire.response_key(data)
    assert key is not None
    assert key[:2] == (7, data[12 : key[2]])
    parsed = wire.parse(data, key[2])
    expected = reference_reply(response)
    # An RRset is a set: compare contents, not order.
    assert (parsed.rcode, sorted(parsed.addresses), sorted(parsed.txt)) == (
        expected.rcode,
        sorted(expected.addresses),
        sorted(expected.txt),
    )


def test_truncated_servfail_and_refused_answers_are_recognised() -> None:
    query = dns.message.make_query("2.0.0.127.bl.test", "A", id=9)
    for rcode, expected in (
        (dns.rcode.SERVFAIL, Rcode.SERVFAIL),
        (dns.rcode.REFUSED, Rcode.REFUSED),
    ):
        response = dns.message.make_response(query)
        response.set_rcode(rcode)
        data = response.to_wire()
        key = wire.response_key(data)
        assert key is not None
        assert wire.parse(data, key[2]).rcode is expected
    response = dns.message.make_response(query)
    response.flags |= dns.flags.TC
    data = response.to_wire()
    key = wire.response_key(data)
    assert key is not None
    assert wire.parse(data, key[2]).rcode is Rcode.TRUNCATED


@given(st.binary(max_size=80))
def test_random_bytes_never_raise_and_never_read_as_an_answer(noise: bytes) -> None:
    data = b"\x00\x07\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x01a\x04test\x00\x00\x01\x00\x01"
    data += noise
    key = wire.response_key(data)
    assert key is not None
    reply = wire.parse(data, key[2])
    assert reply.rcode in (Rcode.NOERROR, Rcode.GARBAGE)
    if reply.rcode is Rcode.NOERROR:
        # Whatever it read must be what dnspython reads too.
        expected = reference_reply(dns.message.from_wire(data, ignore_trailing=True))
        assert sorted(reply.addresses) == sorted(expected.addresses)
        assert sorted(reply.txt) == sorted(expected.txt)
