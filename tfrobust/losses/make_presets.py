"""Rewrites the analytically derived TaylorLoss presets in presets/.

    python -m tfrobust.losses.make_presets

Evolved presets are written by `search.evolve` runs (see README), never here.
"""

import os

from tfrobust.losses import taylor


def main():
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "presets")
    for record in taylor.derived_presets():
        path = os.path.join(folder, f"{record['name']}.json")
        taylor.write_json_atomic(path, record)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
