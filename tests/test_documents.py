"""Reading YAML documents: one loader, one kind of error, whatever is wrong with the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenure.documents import read_yaml
from tenure.errors import ConfigError
from tenure.journeys.spec import JourneyError, load_journey
from tenure.policy.model import load_policy


def test_a_missing_policy_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"policy file not found: .*nope\.yaml"):
        load_policy(tmp_path / "nope.yaml")


def test_a_directory_is_not_a_document(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory, not a policy file"):
        load_policy(tmp_path)


def test_broken_yaml_and_bad_bytes_are_refused_with_the_kind_of_file(tmp_path: Path) -> None:
    broken = tmp_path / "j.yaml"
    broken.write_text("id: [unclosed\n")
    with pytest.raises(JourneyError, match="cannot read journey"):
        load_journey(broken)
    latin = tmp_path / "p.yaml"
    latin.write_bytes(b"id: caf\xe9\n")
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(latin)


def test_a_hostile_nesting_is_refused_not_a_crash(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 20_000 + "]" * 20_000 + "\n")
    with pytest.raises(ConfigError, match="cannot read CSV mapping"):
        read_yaml(deep, "CSV mapping")


def test_an_empty_document_is_none(tmp_path: Path) -> None:
    empty = tmp_path / "e.yaml"
    empty.write_text("")
    assert read_yaml(empty, "settings") is None
