"""Maintains the TaylorLoss presets in presets/.

    python -m tfrobust.losses.make_presets
        rewrites the analytically derived presets.
    python -m tfrobust.losses.make_presets --promote RUN/best_coefficients.json --name NAME [--default]
        ships a search result as preset NAME, keeping the search's provenance
        (command, seed, budget, fitness, wall time, machine); with --default it
        becomes what `TaylorLoss.pretrained()` returns.
"""

import argparse
import json
import os

from tfrobust.losses import taylor

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")


def _records():
    records = {}
    for name in sorted(os.listdir(FOLDER)):
        if name.endswith(".json"):
            with open(os.path.join(FOLDER, name)) as handle:
                records[name] = json.load(handle)
    return records


def _write(record):
    path = os.path.join(FOLDER, f"{record['name']}.json")
    taylor.write_json_atomic(path, record)
    print(f"wrote {path}")


def rewrite_derived():
    existing = {record["name"]: record for record in _records().values()}
    for record in taylor.derived_presets():
        old = existing.get(record["name"])
        if old is not None:
            record["default"] = old.get("default", False)  # the default is chosen by --promote
            record["provenance"]["created"] = old["provenance"]["created"]
        _write(record)


def promote(path, name, make_default):
    with open(path) as handle:
        result = json.load(handle)
    record = taylor.preset_record(
        name,
        result.get("description", "TaylorLoss evolved by search.evolve"),
        result["coefficients"],
        result["order"],
        {**result["provenance"], "source_file": os.path.basename(path)},
        default=make_default,
    )
    if "selection" in result:
        record["selection"] = result["selection"]
    if make_default:
        for other in _records().values():
            if other.get("default") and other["name"] != name:
                other["default"] = False
                _write(other)
    _write(record)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promote", help="a search run's best_coefficients.json")
    parser.add_argument("--name", help="preset name for --promote")
    parser.add_argument("--default", action="store_true", help="make the promoted preset the default")
    args = parser.parse_args()
    if args.promote:
        if not args.name:
            parser.error("--promote needs --name")
        promote(args.promote, args.name, args.default)
    else:
        rewrite_derived()


if __name__ == "__main__":
    main()
