"""The mail DNS adapter against a real authoritative server on loopback (fixtures/dns_server)."""

from __future__ import annotations

import pytest

from hrmonitor.adapters.dns.mail import MailDns
from hrmonitor.core.mx import AddressOutcome, DomainStatus, MxHost, MxOutcome
from tests.fixtures.dns_server import DnsTestServer


@pytest.fixture
def mail_dns(dns_server: DnsTestServer) -> MailDns:
    return MailDns(nameservers=["127.0.0.1"], port=dns_server.port, timeout=0.3, attempts=1)


async def test_domain_with_only_an_mx_record_exists(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add("sender.test", "MX", "10 mx.sender.test.")
    assert await mail_dns.sender_domain_status("Sender.Test") is DomainStatus.EXISTS


async def test_domain_with_only_an_aaaa_record_exists(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add("v6only.test", "AAAA", "::1")
    assert await mail_dns.sender_domain_status("v6only.test") is DomainStatus.EXISTS


async def test_nxdomain_means_no_records(mail_dns: MailDns) -> None:
    assert await mail_dns.sender_domain_status("nowhere.test") is DomainStatus.NO_RECORDS


async def test_name_with_only_txt_is_nodata_and_means_no_records(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add("txtonly.test", "TXT", '"v=spf1 -all"')
    assert await mail_dns.sender_domain_status("txtonly.test") is DomainStatus.NO_RECORDS


async def test_servfail_is_unknown_never_no_records(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.servfail("broken.test")
    assert await mail_dns.sender_domain_status("broken.test") is DomainStatus.UNKNOWN


async def test_timeout_is_unknown_never_no_records(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.drop("silent.test")
    assert await mail_dns.sender_domain_status("silent.test") is DomainStatus.UNKNOWN


async def test_an_answer_wins_over_a_timeout_on_another_type(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    """An A record proves the domain exists even while its MX query times out and AAAA SERVFAILs."""
    dns_server.add("partial.test", "A", "192.0.2.1")
    dns_server.drop("partial.test", "MX")
    dns_server.servfail("partial.test", "AAAA")
    assert await mail_dns.sender_domain_status("partial.test") is DomainStatus.EXISTS
    asked = {rdtype for name, rdtype in dns_server.queries if name == "partial.test."}
    assert asked == {"A", "AAAA", "MX"}


async def test_nodata_on_two_types_and_a_timeout_on_the_third_is_unknown(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add_name("half.test")
    dns_server.drop("half.test", "MX")
    assert await mail_dns.sender_domain_status("half.test") is DomainStatus.UNKNOWN
    dns_server.heal("half.test")
    assert await mail_dns.sender_domain_status("half.test") is DomainStatus.NO_RECORDS


async def test_mx_hosts_sorted_by_preference_then_name(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add("rcpt.test", "MX", "20 b.rcpt.test.", "10 mx.rcpt.test.", "20 a.rcpt.test.")
    result = await mail_dns.mx_hosts("rcpt.test")
    assert result.outcome is MxOutcome.HOSTS
    assert not result.implicit
    assert result.hosts == (
        MxHost(10, "mx.rcpt.test"),
        MxHost(20, "a.rcpt.test"),
        MxHost(20, "b.rcpt.test"),
    )


async def test_implicit_mx_on_the_domains_own_address(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add("plain.test", "A", "127.0.0.50")
    result = await mail_dns.mx_hosts("plain.test")
    assert result.outcome is MxOutcome.HOSTS
    assert result.implicit
    assert result.hosts == (MxHost(0, "plain.test"),)


async def test_null_mx_means_no_mail(dns_server: DnsTestServer, mail_dns: MailDns) -> None:
    dns_server.add("nomail.test", "MX", "0 .")
    dns_server.add("nomail.test", "A", "127.0.0.50")
    result = await mail_dns.mx_hosts("nomail.test")
    assert result.outcome is MxOutcome.NULL_MX
    assert result.permanent_failure


async def test_mx_for_nxdomain_is_no_such_domain(mail_dns: MailDns) -> None:
    result = await mail_dns.mx_hosts("gone.test")
    assert result.outcome is MxOutcome.NO_SUCH_DOMAIN
    assert result.permanent_failure


async def test_mx_for_existing_name_without_any_address_is_no_mail_hosts(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add_name("bare.test")
    result = await mail_dns.mx_hosts("bare.test")
    assert result.outcome is MxOutcome.NO_MAIL_HOSTS


@pytest.mark.parametrize("failure", ["servfail", "drop"])
async def test_mx_failure_is_temporary_not_a_bounce(
    dns_server: DnsTestServer, mail_dns: MailDns, failure: str
) -> None:
    getattr(dns_server, failure)("flaky.test")
    result = await mail_dns.mx_hosts("flaky.test")
    assert result.outcome is MxOutcome.TEMPORARY
    assert not result.permanent_failure
    assert result.reason


async def test_addresses_returns_ipv4_then_ipv6_canonical(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add("mx.rcpt.test", "AAAA", "0:0:0:0:0:0:0:1")
    dns_server.add("mx.rcpt.test", "A", "127.0.0.50")
    result = await mail_dns.addresses("mx.rcpt.test.")
    assert result.outcome is AddressOutcome.FOUND
    assert result.addresses == ("127.0.0.50", "::1")
    assert result.ipv4 == ("127.0.0.50",)


async def test_addresses_nxdomain_vs_nodata_vs_servfail(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add_name("empty.test")
    dns_server.servfail("bad.test")
    assert (await mail_dns.addresses("none.test")).outcome is AddressOutcome.NO_SUCH_HOST
    assert (await mail_dns.addresses("empty.test")).outcome is AddressOutcome.NO_ADDRESS
    assert (await mail_dns.addresses("bad.test")).outcome is AddressOutcome.TEMPORARY


async def test_records_changed_at_run_time_are_served(
    dns_server: DnsTestServer, mail_dns: MailDns
) -> None:
    dns_server.add("moving.test", "A", "127.0.0.50")
    assert (await mail_dns.addresses("moving.test")).addresses == ("127.0.0.50",)
    dns_server.set("moving.test", "A", "127.0.0.51")
    assert (await mail_dns.addresses("moving.test")).addresses == ("127.0.0.51",)
    dns_server.remove("moving.test")
    assert (await mail_dns.addresses("moving.test")).outcome is AddressOutcome.NO_SUCH_HOST
