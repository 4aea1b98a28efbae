"""Atomic file writes: a file is either its old self or complete, never half-written.

Everything tfrobust writes for a user (checkpoints, results, presets, plots)
goes to a temporary file in the same folder and is renamed over the target.
"""

import json
import os


def _temporary(path, suffix=""):
    return f"{path}.tmp.{os.getpid()}{suffix}"


def write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically, creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = _temporary(path)
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, record):
    """Writes `record` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(record, indent=2) + "\n")


def save_figure(figure, path, dpi=110):
    """Saves a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = _temporary(path, ".png")
    figure.savefig(temporary, dpi=dpi)
    plt.close(figure)
    os.replace(temporary, path)
    return path
