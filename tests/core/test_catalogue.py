"""The DNSBL catalogue: the shipped file, validation messages, layering and zone selection."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hrmonitor.core.dnsbl.catalogue import (
    CodeClass,
    Family,
    ListKind,
    check_catalogue,
    load_catalogue,
)
from hrmonitor.core.model import Severity
from hrmonitor.errors import RuleError

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "dnsbl.toml"


def shipped() -> list[tuple[str, str]]:
    return [("rules/dnsbl.toml", SHIPPED.read_text(encoding="utf-8"))]


def one_list(body: str, name: str = "local.toml") -> list[tuple[str, str]]:
    return [(name, body)]


# --- the shipped catalogue ----------------------------------------------------------------


def test_shipped_catalogue_is_valid() -> None:
    assert check_catalogue(shipped()) == []


def test_shipped_catalogue_has_the_zones_the_example_config_names() -> None:
    catalogue = load_catalogue(shipped())
    chosen = catalogue.select(["spamhaus-zen", "spamcop", "barracuda", "mailspike-z", "psbl"])
    assert [z.zone for z in chosen] == [
        "zen.spamhaus.org",
        "bl.spamcop.net",
        "b.barracudacentral.org",
        "z.mailspike.net",
        "psbl.surriel.com",
    ]


def test_shipped_spamhaus_codes_mean_what_the_lists_document() -> None:
    zen = load_catalogue(shipped()).lists["spamhaus-zen"]
    assert zen.meaning("127.0.0.2").tag == "SBL"
    assert zen.meaning("127.0.0.2").severity is Severity.CRITICAL
    assert zen.meaning("127.0.0.6").tag == "XBL-legacy"
    assert zen.meaning("127.0.0.10").severity is Severity.HIGH
    assert "config" in zen.meaning("127.0.0.11").note
    for last in range(250, 256):
        assert zen.meaning(f"127.255.255.{last}").code_class is CodeClass.ERROR
    assert zen.families == {Family.IPV4, Family.IPV6}


def test_shipped_mailspike_reputation_levels_are_information_not_listings() -> None:
    rep = load_catalogue(shipped()).lists["mailspike-rep"]
    assert rep.meaning("127.0.0.10").code_class is CodeClass.LISTED
    assert rep.meaning("127.0.0.12").code_class is CodeClass.LISTED
    for level in range(13, 21):
        assert rep.meaning(f"127.0.0.{level}").code_class is CodeClass.INFO


def test_shipped_uceprotect_levels_2_and_3_are_information_about_neighbours() -> None:
    lists = load_catalogue(shipped()).lists
    assert lists["uceprotect-1"].meaning("127.0.0.2").code_class is CodeClass.LISTED
    assert lists["uceprotect-2"].meaning("127.0.0.2").code_class is CodeClass.INFO
    assert lists["uceprotect-3"].meaning("127.0.0.2").code_class is CodeClass.INFO


def test_a_code_missing_from_the_table_gets_the_default_unknown_code() -> None:
    psbl = load_catalogue(shipped()).lists["psbl"]
    meaning = psbl.meaning("127.0.0.77")
    assert meaning.code_class is CodeClass.LISTED
    assert meaning.severity is Severity.MEDIUM


def test_dqs_key_switches_spamhaus_to_the_dqs_zone_with_the_key_filled_in() -> None:
    (zen,) = load_catalogue(shipped()).select(["spamhaus-zen"], dqs_key="abc123")
    assert zen.zone == "abc123.zen.dq.spamhaus.net"


def test_a_key_templated_zone_without_a_key_is_refused_naming_the_list() -> None:
    with pytest.raises(RuleError, match=r"lists\.abusix\.zone.*needs an access key"):
        load_catalogue(shipped()).select(["abusix"])


def test_a_key_templated_zone_takes_its_own_key() -> None:
    (abusix,) = load_catalogue(shipped()).select(["abusix"], keys={"abusix": "k1"})
    assert abusix.zone == "k1.combined.mail.abusix.zone"


def test_the_domain_list_cannot_be_selected_for_pool_ips() -> None:
    catalogue = load_catalogue(shipped())
    assert catalogue.lists["spamhaus-dbl"].kind is ListKind.DOMAIN
    with pytest.raises(RuleError, match="domain list"):
        catalogue.select(["spamhaus-dbl"])


def test_an_unknown_list_name_is_refused_naming_the_config_key() -> None:
    with pytest.raises(RuleError) as caught:
        load_catalogue(shipped()).select(["spamcop", "nosuch"], config_file="site.toml")
    assert caught.value.file == "site.toml"
    assert caught.value.key == "dnsbl.zones[1]"
    assert "'nosuch'" in caught.value.problem


@pytest.mark.parametrize(
    "zone",
    ["dnsbl.sorbs.net", "sorbs.net", "ix.dnsbl.manitu.net", "cbl.abuseat.org", "DNSBL.Ahbl.org."],
)
def test_a_list_on_a_dead_zone_is_refused_with_reason_and_date(zone: str) -> None:
    local = one_list(
        f'[lists.old]\nzone = "{zone}"\n[lists.old.codes]\n'
        '"127.0.0.2" = { class = "listed", severity = "high" }\n'
    )
    catalogue = load_catalogue(shipped() + local)
    with pytest.raises(RuleError, match=r"dead since \d{4}-\d\d-\d\d: .+") as caught:
        catalogue.select(["old"])
    assert caught.value.file == "rules/dnsbl.toml"
    assert caught.value.key.startswith("dead.")


def test_a_zone_that_merely_ends_with_a_dead_name_is_not_dead() -> None:
    local = one_list(
        '[lists.ok]\nzone = "notsorbs.net"\n[lists.ok.codes]\n'
        '"127.0.0.2" = { class = "listed", severity = "high" }\n'
    )
    (chosen,) = load_catalogue(shipped() + local).select(["ok"])
    assert chosen.zone == "notsorbs.net"


# --- validation messages ------------------------------------------------------------------

BAD_FILES = [
    (
        '[lists.x]\nzone = "x.test"\n[lists.x.codes]\n'
        '"127.0.0.300" = { class = "listed", severity = "high" }\n',
        'lists.x.codes."127.0.0.300"',
        "not an IPv4 address",
    ),
    (
        '[lists.x]\nzone = "x.test"\n[lists.x.codes]\n'
        '"10.0.0.2" = { class = "listed", severity = "high" }\n',
        'lists.x.codes."10.0.0.2"',
        "outside 127.0.0.0/8",
    ),
    (
        '[lists.x]\nzone = "x.test"\n[lists.x.codes]\n"127.0.0.2" = { class = "listed" }\n',
        'lists.x.codes."127.0.0.2".severity',
        "missing",
    ),
    (
        '[lists.x]\nzone = "x.test"\n[lists.x.codes]\n"127.0.0.2" = { class = "bad" }\n',
        'lists.x.codes."127.0.0.2".class',
        "not one of",
    ),
    (
        '[lists.x]\nzone = "x.test"\n[lists.x.codes]\n"127.0.0.5-127.0.0.3" = { class = "info" }\n',
        'lists.x.codes."127.0.0.5-127.0.0.3"',
        "ends before it starts",
    ),
    (
        '[lists.x]\nzone = "x.test"\n[lists.x.codes]\n'
        '"127.0.0.2-127.0.0.5" = { class = "info" }\n"127.0.0.4" = { class = "info" }\n',
        "lists.x.codes",
        "covered by two entries",
    ),
    ('[lists.x]\nzone = "x.test"\nzonee = "y"\n', "lists.x.zonee", "unknown key"),
    ('[lists.x]\nfamilies = ["ipv4"]\n', "lists.x.zone", "missing"),
    ('[lists.x]\nzone = "x.test"\nfamilies = ["ipv5"]\n', "lists.x.families[0]", "'ipv5'"),
    ('[lists.x]\nzone = "not a zone"\n', "lists.x.zone", "not a DNS zone name"),
    ('[dead."old.test"]\nreason = "gone"\n', 'dead."old.test".since', "missing"),
    ('[dead."old.test"]\nsince = "last year"\nreason = "x"\n', 'dead."old.test".since', "date"),
    ("[surprise]\n", "surprise", "unknown key"),
    ("[lists.x\n", "", "not valid TOML"),
]


@pytest.mark.parametrize(("text", "key", "problem"), BAD_FILES)
def test_invalid_catalogue_is_refused_naming_file_key_and_problem(
    text: str, key: str, problem: str
) -> None:
    with pytest.raises(RuleError) as caught:
        load_catalogue(one_list(text, "site/local.toml"))
    assert caught.value.file == "site/local.toml"
    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"site/local.toml: {key}" if key else "site/local.toml")


def test_check_catalogue_reports_each_bad_file_and_passes_good_ones() -> None:
    problems = check_catalogue(
        [*shipped(), ("a.toml", "[surprise]\n"), ("b.toml", '[lists.x]\nzone = "x"\n')]
    )
    assert len(problems) == 2
    assert problems[0].startswith("a.toml: surprise")
    assert problems[1].startswith("b.toml: lists.x.zone")


# --- layering -----------------------------------------------------------------------------


def test_a_later_file_replaces_a_list_whole_and_keeps_the_others() -> None:
    local = one_list(
        '[lists.psbl]\nzone = "psbl.mirror.test"\n[lists.psbl.codes]\n'
        '"127.0.0.2" = { tag = "mine", class = "listed", severity = "low" }\n'
    )
    catalogue = load_catalogue(shipped() + local)
    psbl = catalogue.lists["psbl"]
    assert psbl.zone == "psbl.mirror.test"
    assert psbl.meaning("127.0.0.2").tag == "mine"
    assert psbl.lookup_url == ""  # replaced whole, not merged key by key
    assert psbl.source == "local.toml"
    assert catalogue.lists["spamcop"].zone == "bl.spamcop.net"


def test_a_later_default_applies_to_lists_of_earlier_files() -> None:
    local = one_list('[defaults]\nunknown_code = { class = "info" }\n')
    catalogue = load_catalogue(shipped() + local)
    assert catalogue.lists["spamcop"].meaning("127.0.0.99").code_class is CodeClass.INFO


_KEYS = st.sampled_from(["a", "b", "c", "d"])
_FILES = st.lists(st.dictionaries(_KEYS, st.sampled_from(["low", "medium", "high"])), max_size=4)


@given(_FILES)
def test_layering_takes_each_list_from_the_last_file_that_defines_it(
    files: list[dict[str, str]],
) -> None:
    texts = []
    for index, lists in enumerate(files):
        body = ""
        for key, severity in lists.items():
            body += (
                f'[lists.{key}]\nzone = "{key}{index}.test"\n[lists.{key}.codes]\n'
                f'"127.0.0.2" = {{ class = "listed", severity = "{severity}" }}\n'
            )
        texts.append((f"f{index}.toml", body))
    catalogue = load_catalogue(texts)
    expected: dict[str, tuple[str, str]] = {}
    for index, lists in enumerate(files):
        for key, severity in lists.items():
            expected[key] = (f"{key}{index}.test", severity)
    assert {
        k: (z.zone, str(z.meaning("127.0.0.2").severity)) for k, z in catalogue.lists.items()
    } == (expected)


def test_a_list_named_twice_is_refused() -> None:
    with pytest.raises(RuleError, match=r"dnsbl\.zones\[2\]: 'psbl' is listed twice"):
        load_catalogue(shipped()).select(["psbl", "spamcop", "psbl"])
