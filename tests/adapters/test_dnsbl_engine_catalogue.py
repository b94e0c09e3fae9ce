"""Reading catalogue files from disk, for the engine's config and ``hrmonitor rules check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hrmonitor.adapters.dns.dnsbl.engine import read_catalogue, validate_catalogue_files
from hrmonitor.errors import RuleError

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "dnsbl.toml"


def test_read_catalogue_layers_files_in_order(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text(
        '[lists.psbl]\nzone = "psbl.local.test"\n[lists.psbl.codes]\n'
        '"127.0.0.2" = { class = "listed", severity = "low" }\n'
    )
    catalogue = read_catalogue([SHIPPED, local])
    assert catalogue.lists["psbl"].zone == "psbl.local.test"
    assert catalogue.lists["psbl"].source == str(local)
    assert catalogue.lists["spamcop"].source == str(SHIPPED)


def test_a_missing_catalogue_file_is_a_rule_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(RuleError, match=r"nope\.toml: cannot read"):
        read_catalogue([missing])


def test_validate_reports_every_bad_file_by_name_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[lists.x]\nzone = "x.test"\ncolour = "red"\n')
    problems = validate_catalogue_files([SHIPPED, bad, tmp_path / "gone.toml"])
    assert len(problems) == 2
    assert problems[0] == f"{bad}: lists.x.colour: unknown key (allowed: " + (
        "codes, daily_budget, dqs_zone, families, kind, lookup_url, notes, zone)"
    )
    assert problems[1].startswith(f"{tmp_path / 'gone.toml'}: cannot read")


def test_validate_passes_the_shipped_catalogue() -> None:
    assert validate_catalogue_files([SHIPPED]) == []
