"""The version setting, and the code version "auto" derives from the served modules' source."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ergon_actors.config import Settings
from ergon_actors.errors import ConfigError
from ergon_actors.runtime.version import code_version, resolve_version

FLOWS = '''
from dataclasses import dataclass
from ergon_actors import flow, flow_type

@dataclass
@flow_type
class Parcel:
    order: str

    @flow
    async def run(self) -> str:
        return {result!r}
'''


@pytest.fixture
def module(tmp_path: Path) -> Iterator[Path]:
    """A flow module `parcels_under_test` in a folder on sys.path, forgotten afterwards."""
    path = tmp_path / "parcels_under_test.py"
    path.write_text(FLOWS.format(result="a"))
    sys.path.insert(0, str(tmp_path))
    try:
        yield path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("parcels_under_test", None)


def test_the_code_version_follows_the_source(module: Path) -> None:
    first = code_version(["parcels_under_test"])
    assert len(first) == 12 and int(first, 16) >= 0
    assert code_version(["parcels_under_test"]) == first
    module.write_text(FLOWS.format(result="b"))
    assert code_version(["parcels_under_test"]) != first


def test_auto_is_resolved_and_anything_else_kept(module: Path) -> None:
    auto = resolve_version(Settings(version="auto"), ["parcels_under_test"])
    assert auto.version == code_version(["parcels_under_test"])
    assert resolve_version(Settings(version="7"), ["parcels_under_test"]).version == "7"
    assert resolve_version(Settings(), ["parcels_under_test"]).version is None


@pytest.mark.parametrize("bad", ["", "   ", "x" * 129])
def test_a_version_is_one_to_128_characters(bad: str) -> None:
    with pytest.raises(ConfigError, match="setting version must be 1 to 128 characters"):
        Settings(version=bad)


def test_the_version_comes_from_ergon_version() -> None:
    assert Settings.from_env({"ERGON_VERSION": "2024-06"}).version == "2024-06"
    assert Settings.from_env({}).version is None
