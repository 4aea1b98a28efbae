"""Maintains the TaylorLoss presets shipped in `tfrobust/losses/presets/` (behind `python -m search.make_presets`).

Two jobs: rewrite the analytically derived presets from
`tfrobust.losses.taylor.derived_presets`, and promote a search result
(`best_coefficients.json`) to a named preset, keeping the search's
provenance. Every record written here carries the git revision it was
written at (`tfrobust._provenance.git_revision`).
"""

import json
import os

from tfrobust import _io
from tfrobust import _provenance
from tfrobust.losses import taylor

FOLDER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "losses", "presets")
COMMAND = "python -m search.make_presets"
# Provenance entries that say when and where a record was written, not what it holds.
_WRITTEN_AT = ("created", "revision", "dirty")


def read_presets(folder=FOLDER):
    """`{name: record}` of the preset files in `folder`."""
    records = {}
    for filename in sorted(os.listdir(folder)):
        if filename.endswith(".json"):
            with open(os.path.join(folder, filename)) as handle:
                record = json.load(handle)
            records[record["name"]] = record
    return records


def derived_records(existing=None):
    """The derived presets as this code derives them.

    A preset whose content is unchanged keeps its recorded date and revision
    (and whether it is the default, which only `promote` changes), so
    rewriting is idempotent and the shipped files can be compared with it.
    """
    existing = existing or {}
    records = []
    for record in taylor.derived_presets():
        record["provenance"]["command"] = COMMAND
        record["provenance"].update(_provenance.git_revision())
        old = existing.get(record["name"])
        if old is not None:
            record["default"] = old.get("default", False)
            if content(old) == content(record):
                record["provenance"].update({k: old["provenance"][k] for k in _WRITTEN_AT if k in old["provenance"]})
        records.append(record)
    return records


def content(record):
    """A record without the entries that say when and where it was written."""
    provenance = {k: v for k, v in record["provenance"].items() if k not in _WRITTEN_AT}
    return {**{k: v for k, v in record.items() if k not in ("provenance", "default")}, "provenance": provenance}


def rewrite_derived(folder=FOLDER, printer=print):
    """Writes the derived presets into `folder`; returns their paths."""
    return [_write(folder, record, printer) for record in derived_records(read_presets(folder))]


def promote(path, name, make_default=False, folder=FOLDER, printer=print, description=None):
    """Ships the search result at `path` as preset `name`; with `make_default` it becomes the default.

    `description` (one line, shown by `TaylorLoss.presets()`) replaces the search's own, e.g. to say
    how the preset did on the held-out protocol.

    Raises:
        ValueError: `path` is not a search result, or `name` is that of a derived preset.
    """
    if name in {record["name"] for record in taylor.derived_presets()}:
        raise ValueError(f"{name!r} is a derived preset (rewritten from its derivation); choose another --name.")
    try:
        with open(path) as handle:
            result = json.load(handle)
        coefficients, order, provenance = result["coefficients"], result["order"], result["provenance"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path!r} is not a search result ({type(error).__name__}: {error}): pass the "
            "best_coefficients.json that `python -m search.evolve` wrote."
        ) from None
    record = taylor.preset_record(
        name,
        description or result.get("description", "TaylorLoss evolved by search.evolve"),
        coefficients,
        order,
        # The search's own revision stays under "search_revision"; "revision" says what wrote the preset.
        {**provenance, "search_revision": provenance.get("revision", "unknown"),
         **_provenance.git_revision(), "source_file": os.path.basename(path), "promoted_by": COMMAND},
        default=make_default,
    )
    if "selection" in result:
        record["selection"] = result["selection"]
    if make_default:
        for other in read_presets(folder).values():
            if other.get("default") and other["name"] != name:
                other["default"] = False
                _write(folder, other, printer)
    return _write(folder, record, printer)


def _write(folder, record, printer):
    path = os.path.join(folder, f"{record['name']}.json")
    _io.write_json(path, record)
    printer(f"wrote {path}")
    return path
