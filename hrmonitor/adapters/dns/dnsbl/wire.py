"""The few bytes of DNS the DNSBL engine needs: question encoding and answer parsing.

Why not ``dns.message`` on the hot path: a sweep is tens of thousands of
one-question queries whose answers are a handful of A or TXT records;
building and parsing full dnspython messages cost several times the rest of
the engine (benchmarks/README.md). This module encodes exactly that subset
and hands anything it cannot read to ``dns.message.from_wire``, which stays
the reference: tests/adapters/test_dnsbl_engine_wire.py checks both agree.
"""

from __future__ import annotations

import ipaddress
import struct

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from hrmonitor.core.dnsbl.answers import Rcode, Reply

TYPE_A = 1
TYPE_TXT = 16
_CLASS_IN = 1
_RD = 0x0100
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_TC = 0x0200

_RCODES = {0: Rcode.NOERROR, 2: Rcode.SERVFAIL, 3: Rcode.NXDOMAIN, 5: Rcode.REFUSED}
NXDOMAIN = Reply(Rcode.NXDOMAIN)  # shared: most answers of a sweep are this one


def encode_labels(name: str) -> bytes:
    """Wire form of a (relative) dotted name without the root label, lowercased."""
    out = bytearray()
    for label in name.strip(".").lower().split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label in {name!r}")
        out.append(len(raw))
        out += raw
    return bytes(out)


def reversed_ip_labels(ip: str, *, unmap: bool = True) -> bytes:
    """Wire labels of an IP's DNSBL query prefix (IPv4 octets or 32 nibbles, reversed)."""
    address = ipaddress.ip_address(ip)
    if unmap and isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return reversed_address_labels(address)


def reversed_address_labels(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """Wire labels of the DNSBL query prefix of an address, as given (no unmapping)."""
    table = _OCTET_LABELS if address.version == 4 else _NIBBLE_LABELS
    return b"".join([table[byte] for byte in reversed(address.packed)])


def _label(text: str) -> bytes:
    return bytes((len(text),)) + text.encode("ascii")


# Per byte of a packed address, its labels in reversed order: the decimal octet
# (IPv4), or the low then the high hex nibble (IPv6), as ``exploded`` spells them.
_OCTET_LABELS = [_label(str(byte)) for byte in range(256)]
_NIBBLE_LABELS = [_label(f"{byte & 15:x}") + _label(f"{byte >> 4:x}") for byte in range(256)]


def question(prefix: bytes, zone: bytes, rdtype: int) -> bytes:
    """The question section: prefix labels + zone labels + root, type, class IN."""
    return prefix + zone + b"\x00" + struct.pack("!HH", rdtype, _CLASS_IN)


_QUERY_FLAGS_AND_COUNTS = _HEADER.pack(0, _RD, 1, 0, 0, 0)[2:]


def query(qid: int, question_wire: bytes) -> bytes:
    """A recursive (RD) query message with one question and no EDNS."""
    return qid.to_bytes(2, "big") + query_body(question_wire)


def query_body(question_wire: bytes) -> bytes:
    """The query message but its first two bytes, the id: a try sends id + body."""
    return _QUERY_FLAGS_AND_COUNTS + question_wire


def response_key(data: bytes) -> tuple[int, bytes, int] | None:
    """(id, lowercased question, end of question) of a response, or None if unmatchable.

    The exchange does the same matching in place (the id finds the waiting
    query, whose question is compared at offset 12); this is its spelled-out
    form, for tests and tools.
    """
    if len(data) < 17:
        return None
    end = data.find(b"\x00", 12)  # our names never hold a zero byte; a mismatch just drops
    if end < 0 or end + 5 > len(data):
        return None
    end += 5
    return (data[0] << 8) | data[1], data[12:end].lower(), end


def parse(data: bytes, question_end: int) -> Reply:
    """The rcode, A addresses and TXT strings of a response whose question ends at the offset."""
    try:
        return _parse(data, question_end)
    except (IndexError, struct.error, ValueError):
        return _parse_with_dnspython(data)


def _parse(data: bytes, pos: int) -> Reply:
    flags = (data[2] << 8) | data[3]
    if flags & _TC:
        return Reply(Rcode.TRUNCATED)
    rcode = _RCODES.get(flags & 0x0F)
    if rcode is Rcode.NXDOMAIN:
        return NXDOMAIN
    if rcode is not Rcode.NOERROR:
        return _parse_with_dnspython(data)
    if data[4:6] != b"\x00\x01":
        raise ValueError("not one question")
    count = (data[6] << 8) | data[7]
    addresses: list[str] = []
    texts: list[str] = []
    size = len(data)
    for _ in range(count):
        while True:  # owner name: labels, ending in a root label or a pointer
            length = data[pos]
            if length >= 0xC0:
                pos += 2
                break
            pos += 1 + length
            if length == 0:
                break
        rdtype, _rdclass, _ttl, rdlength = _RR.unpack_from(data, pos)
        pos += 10
        end = pos + rdlength
        if end > size:
            raise ValueError("record runs past the message")
        if rdtype == TYPE_A and rdlength == 4:
            addresses.append(f"{data[pos]}.{data[pos + 1]}.{data[pos + 2]}.{data[pos + 3]}")
        elif rdtype == TYPE_TXT:
            texts.append(_txt(data, pos, end))
        pos = end
    return Reply(Rcode.NOERROR, tuple(addresses), tuple(texts))


def _txt(data: bytes, pos: int, end: int) -> str:
    parts = []
    while pos < end:
        length = data[pos]
        if pos + 1 + length > end:
            raise ValueError("TXT string runs past its record")
        parts.append(data[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return b"".join(parts).decode("utf-8", errors="replace")


def _parse_with_dnspython(data: bytes) -> Reply:
    try:
        message = dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError) as exc:
        return Reply(Rcode.GARBAGE, detail=str(exc) or type(exc).__name__)
    if message.flags & dns.flags.TC:
        return Reply(Rcode.TRUNCATED)
    code = message.rcode()
    rcode = _RCODES.get(int(code), Rcode.OTHER)
    if rcode is not Rcode.NOERROR:
        detail = dns.rcode.to_text(code) if rcode is Rcode.OTHER else ""
        return NXDOMAIN if rcode is Rcode.NXDOMAIN else Reply(rcode, detail=detail)
    addresses: list[str] = []
    texts: list[str] = []
    for rrset in message.answer:
        if rrset.rdtype == dns.rdatatype.A:
            addresses.extend(rdata.address for rdata in rrset)
        elif rrset.rdtype == dns.rdatatype.TXT:
            texts.extend(
                b"".join(rdata.strings).decode("utf-8", errors="replace") for rdata in rrset
            )
    return Reply(Rcode.NOERROR, tuple(addresses), tuple(texts))
