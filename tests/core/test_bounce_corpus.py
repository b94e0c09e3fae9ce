"""The labelled corpus (tests/data/bounces/labels.toml) against the classifier and flufl.bounce.

Every labelled failed address is found, no non-bounce is called a bounce,
every address flufl.bounce finds in a real bounce is found too (with status
and reason, which flufl.bounce does not give), and line endings do not matter.
"""

from __future__ import annotations

import email
import tomllib
from pathlib import Path
from typing import Any

import pytest
from flufl.bounce import all_failures

from hrmonitor.adapters.rule_files import load_bounce_patterns
from hrmonitor.core.bounce.classify import BounceKind, BounceReport, classify_message
from hrmonitor.core.bounce.reason import BouncePatterns

CORPUS = Path(__file__).resolve().parents[1] / "data" / "bounces"
LABELS: dict[str, dict[str, Any]] = tomllib.loads((CORPUS / "labels.toml").read_text("utf-8"))[
    "messages"
]
BOUNCE_KINDS = {BounceKind.DSN, BounceKind.NONSTANDARD_BOUNCE}
# flufl.bounce's Yale detector adds user@cs.yale.edu from a Yale convention; the
# message itself names only the bare user (which we read as user@yale.edu).
FLUFL_INVENTED = {"flufl/yale_01.txt": {"userx@cs.yale.edu"}}


@pytest.fixture(scope="module")
def patterns() -> BouncePatterns:
    return load_bounce_patterns(CORPUS.parents[2] / "rules" / "bounce.toml")


def _classify(name: str, patterns: BouncePatterns) -> BounceReport:
    return classify_message((CORPUS / name).read_bytes(), patterns=patterns)


def _failed(report: BounceReport) -> set[str]:
    return {recipient.address.lower() for recipient in report.failures}


def test_corpus_has_every_file_labelled() -> None:
    """No message in the corpus escapes the checks below for want of a label."""
    files = {
        str(path.relative_to(CORPUS))
        for path in CORPUS.rglob("*")
        if path.suffix in (".txt", ".eml")
    }
    assert files == set(LABELS)
    assert len([name for name in LABELS if name.startswith("flufl/")]) == 117


@pytest.mark.parametrize("name", sorted(LABELS))
def test_corpus_message_gets_its_labelled_kind_addresses_and_reasons(
    name: str, patterns: BouncePatterns
) -> None:
    """Kind as labelled; every labelled failed address found; labelled reasons agree."""
    label = LABELS[name]
    report = _classify(name, patterns)
    assert report.kind == label["kind"]
    failed = {recipient.address.lower(): recipient for recipient in report.failures}
    expected = {address.lower() for address in label["failed"]}
    assert expected <= set(failed), f"missing {expected - set(failed)}"
    if report.kind not in BOUNCE_KINDS:
        assert report.recipients == ()
    reasons = {key.lower(): value for key, value in label.get("reasons", {}).items()}
    for address in expected:
        want = reasons.get(address, label.get("reason"))
        if want is not None:
            assert failed[address].reason == want, address
        if label.get("delayed"):
            assert failed[address].action == "delayed"
            assert failed[address].status.startswith("4")
            assert not failed[address].hard
    for address in label.get("delivered", []):
        delivered = [r for r in report.recipients if r.address.lower() == address.lower()]
        assert delivered
        assert delivered[0].reason == "delivered"
        assert not delivered[0].failed


def test_corpus_recall_and_no_false_bounces(patterns: BouncePatterns) -> None:
    """Recall over all labelled failed addresses is total, and no non-bounce is a bounce."""
    expected = found = 0
    for name, label in LABELS.items():
        report = _classify(name, patterns)
        want = {address.lower() for address in label["failed"]}
        expected += len(want)
        found += len(want & _failed(report))
        if label["kind"] not in BOUNCE_KINDS:
            assert report.kind not in BOUNCE_KINDS, name
    assert expected > 150
    assert found == expected


@pytest.mark.parametrize("name", sorted(n for n in LABELS if LABELS[n]["kind"] in BOUNCE_KINDS))
def test_finds_every_address_flufl_bounce_finds_and_adds_status_and_reason(
    name: str, patterns: BouncePatterns
) -> None:
    """Side by side with flufl.bounce's all_failures on the same bytes."""
    raw = (CORPUS / name).read_bytes()
    temporary, permanent = all_failures(email.message_from_bytes(raw))
    theirs = {address.decode("utf-8", "replace").lower() for address in temporary | permanent}
    theirs -= FLUFL_INVENTED.get(name, set())
    report = classify_message(raw, patterns=patterns)
    ours = {recipient.address.lower(): recipient for recipient in report.failures}
    assert theirs <= set(ours), f"flufl.bounce alone found {theirs - set(ours)}"
    for address in theirs:
        assert ours[address].status[:1] in ("4", "5")
        assert ours[address].reason not in ("delivered", "feedback", "vacation")


def test_reasons_are_more_than_undefined_on_most_corpus_failures(patterns: BouncePatterns) -> None:
    """The taxonomy names a cause for at least 70 % of failed recipients in the corpus."""
    failures = [recipient for name in LABELS for recipient in _classify(name, patterns).failures]
    named = [recipient for recipient in failures if recipient.reason != "undefined"]
    assert len(named) >= 0.7 * len(failures)


@pytest.mark.parametrize("name", sorted(LABELS))
def test_line_endings_do_not_change_the_classification(name: str, patterns: BouncePatterns) -> None:
    """CR, LF and CRLF versions of a corpus message classify the same."""
    raw = (CORPUS / name).read_bytes()
    lf = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    variants = [lf, lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r")]
    reports = [classify_message(variant, patterns=patterns) for variant in variants]
    assert reports[1] == reports[0]
    assert reports[2] == reports[0]
