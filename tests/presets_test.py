"""Preset tooling: the shipped derived presets are what the code derives; promote keeps provenance."""

import json
import shutil
import subprocess
import sys

import pytest

from tfrobust.losses import TaylorLoss
from tfrobust.search import presets

DERIVED = ("squared_error", "mae", "cross_entropy_taylor3")


def test_shipped_derived_presets_are_what_the_code_derives():
    shipped = presets.read_presets()
    derived = {record["name"]: record for record in presets.derived_records()}
    assert sorted(derived) == sorted(DERIVED)
    for name in DERIVED:
        # Exact: the files are written from these records, and JSON round-trips Python floats.
        assert presets.content(shipped[name]) == presets.content(derived[name]), name
        assert shipped[name]["provenance"]["command"] == presets.COMMAND
        assert "revision" in shipped[name]["provenance"]


@pytest.fixture
def folder(tmp_path):
    copy = tmp_path / "presets"
    shutil.copytree(presets.FOLDER, copy)
    return copy


def test_rewriting_unchanged_derived_presets_changes_nothing(folder):
    before = {path.name: path.read_text() for path in folder.iterdir()}
    presets.rewrite_derived(str(folder), printer=lambda *_: None)
    assert {path.name: path.read_text() for path in folder.iterdir()} == before


def test_promote_ships_a_search_result_with_its_provenance(folder, tmp_path):
    result = tmp_path / "best_coefficients.json"
    record = TaylorLoss.preset_info("cross_entropy_taylor3")
    result.write_text(json.dumps({**record, "provenance": {"command": "search", "seed": 4, "revision": "abc"}}))
    path = presets.promote(str(result), "mine", make_default=True, folder=str(folder), printer=lambda *_: None)
    promoted = json.loads(open(path).read())
    assert promoted["default"] and promoted["coefficients"] == record["coefficients"]
    provenance = promoted["provenance"]
    assert provenance["seed"] == 4 and provenance["search_revision"] == "abc"
    assert provenance["revision"] != "abc" and "dirty" in provenance
    assert [r["name"] for r in presets.read_presets(str(folder)).values() if r["default"]] == ["mine"]
    assert promoted["description"] == record["description"]  # the search's own, when none is given
    path = presets.promote(str(result), "named", folder=str(folder), printer=lambda *_: None,
                           description="fails the held-out rule")
    named = json.loads(open(path).read())
    assert named["description"] == "fails the held-out rule" and not named["default"]


def test_promote_refuses_what_is_not_a_search_result_or_a_derived_name(folder, tmp_path):
    with pytest.raises(ValueError, match="is not a search result"):
        presets.promote(str(tmp_path / "missing.json"), "mine", folder=str(folder))
    with pytest.raises(ValueError, match="is a derived preset"):
        presets.promote(str(tmp_path / "missing.json"), "mae", folder=str(folder))


def test_script_needs_a_name_to_promote():
    result = subprocess.run([sys.executable, "-m", "search.make_presets", "--promote=x.json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "--promote needs --name" in result.stderr
