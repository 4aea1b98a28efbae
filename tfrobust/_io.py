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
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        # A failed write (disk full, an interrupt) leaves the target as it was and no half file beside it.
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_text(path, text):
    """Writes `text` to `path` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path, record):
    """Writes `record` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(record, indent=2) + "\n")


def read_jsonl(path):
    """The records of a JSON-lines file; a torn (half-written) line is skipped. [] if absent."""
    records = []
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return records


def _ends_inside_a_line(path):
    """Whether the file at `path` exists and its last line lacks its newline (a torn write)."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return False
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) != b"\n"


def append_jsonl(path, records):
    """Appends `records` (dicts) to a JSON-lines file, one line each, and syncs it to disk.

    A crash can tear at most the last line, which `read_jsonl` skips. A torn
    line is ended first, so the records appended after it stay whole.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torn = _ends_inside_a_line(path)
    with open(path, "a") as handle:
        if torn:
            handle.write("\n")
        for record in records:
            handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def new_figure(figsize=(6, 4)):
    """A matplotlib `Figure` and its axes, made without pyplot.

    Library plots never touch pyplot's global state or the backend, so they
    neither change what `plt.show()` does in a notebook nor need a display.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    return figure, figure.subplots()


def save_figure(figure, path, dpi=110):
    """Saves a matplotlib figure as PNG atomically; returns `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = _temporary(path, ".png")
    figure.savefig(temporary, dpi=dpi, format="png")
    os.replace(temporary, path)
    return path
