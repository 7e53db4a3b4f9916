"""The connector registry: built-ins and third-party connectors found by entry point."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from recova.connectors.base import Source
from recova.connectors.csv_file import CsvConnector
from recova.connectors.excel import ExcelConnector
from recova.connectors.http import HttpConnector
from recova.connectors.jsonl import JsonLinesConnector
from recova.connectors.registry import (
    ConflictingConnectors,
    UnknownConnector,
    available_connectors,
    get_connector,
)

THIRD_PARTY_MODULE = """
from recova.connectors.base import Record


class ShoutingConnector:
    name = "shout"
    kind = "file"

    def __init__(self, *, volume=1):
        self.volume = volume

    def records(self, source, *, resume=None):
        yield Record(1, {"text": "HELLO" * self.volume})

    def estimate_total(self, source):
        return 1
"""


@pytest.fixture(autouse=True)
def forget_third_party_module() -> Iterator[None]:
    """Each test imports its own copy of the third party's module."""
    yield
    sys.modules.pop("shouting_connector", None)


def install_distribution(
    root: Path, monkeypatch: pytest.MonkeyPatch, *, name: str, entry_points: str
) -> None:
    """Make ``root`` a sys.path entry holding an installed distribution's metadata."""
    dist_info = root / f"{name}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(root))


def test_built_in_connectors_are_registered() -> None:
    assert available_connectors() == ["csv", "http", "jsonl", "xlsx"]


@pytest.mark.parametrize(
    ("name", "kind", "expected_type"),
    [
        ("csv", "file", CsvConnector),
        ("xlsx", "file", ExcelConnector),
        ("jsonl", "file", JsonLinesConnector),
        ("http", "pull", HttpConnector),
    ],
)
def test_get_connector_returns_a_new_instance(name: str, kind: str, expected_type: type) -> None:
    connector = get_connector(name)

    assert isinstance(connector, expected_type)
    assert connector.name == name
    assert connector.kind == kind
    assert get_connector(name) is not connector


def test_constructor_arguments_are_passed_through() -> None:
    connector = get_connector("http", allow_private_hosts=True)

    assert isinstance(connector, HttpConnector)


def test_unknown_name_is_a_lookup_error_naming_the_known_ones() -> None:
    with pytest.raises(UnknownConnector) as caught:
        get_connector("parquet")

    assert isinstance(caught.value, LookupError)
    assert str(caught.value) == (
        "no connector named 'parquet'; the installed ones are: csv, http, jsonl, xlsx"
    )
    assert caught.value.known == ["csv", "http", "jsonl", "xlsx"]


def test_third_party_connector_registered_by_entry_point_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shouting_connector.py").write_text(THIRD_PARTY_MODULE)
    install_distribution(
        tmp_path,
        monkeypatch,
        name="recova_shout",
        entry_points="[recova.connectors]\nshout = shouting_connector:ShoutingConnector\n",
    )

    assert available_connectors() == ["csv", "http", "jsonl", "shout", "xlsx"]
    connector = get_connector("shout", volume=2)
    assert [r.values for r in connector.records(Source())] == [{"text": "HELLOHELLO"}]
    assert connector.estimate_total(Source()) == 1


def test_third_party_connector_is_gone_once_uninstalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Entry points are read per call: nothing stale is cached from the test above.
    assert "shout" not in available_connectors()
    with pytest.raises(UnknownConnector):
        get_connector("shout")


def test_two_distributions_claiming_one_name_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shouting_connector.py").write_text(THIRD_PARTY_MODULE)
    install_distribution(
        tmp_path,
        monkeypatch,
        name="recova_fake_csv",
        entry_points="[recova.connectors]\ncsv = shouting_connector:ShoutingConnector\n",
    )

    with pytest.raises(ConflictingConnectors, match="named 'csv'"):
        get_connector("csv")
    assert available_connectors().count("csv") == 1


def test_entry_point_that_is_not_a_connector_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_distribution(
        tmp_path,
        monkeypatch,
        name="recova_broken",
        entry_points="[recova.connectors]\nbroken = builtins:dict\n",
    )

    with pytest.raises(TypeError, match="does not make a connector"):
        get_connector("broken")
