"""tfrobust._io: a file is either its old self or complete, and a torn JSON line costs only itself."""

import json
import os

import numpy as np
import pytest

from tfrobust import _io


def test_write_json_creates_the_folder_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "new" / "folder" / "record.json"
    _io.write_json(str(path), {"fitness": 0.5, "seed": 3})
    assert json.loads(path.read_text()) == {"fitness": 0.5, "seed": 3}
    _io.write_text(str(path), "replaced\n")
    assert path.read_text() == "replaced\n"
    assert sorted(os.listdir(path.parent)) == ["record.json"]


def test_a_failed_write_leaves_the_old_file_whole_and_no_half_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.json"
    _io.write_json(str(path), {"generation": 1})

    def disk_full(descriptor):
        raise OSError(28, "No space left on device")

    # The data has reached the temporary file when the sync fails: the rename must not happen.
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _io.write_json(str(path), {"generation": 2, "padding": "x" * 10_000})
    assert json.loads(path.read_text()) == {"generation": 1}
    assert os.listdir(tmp_path) == ["checkpoint.json"]


def test_read_jsonl_skips_a_torn_last_line_and_a_missing_file_is_empty(tmp_path):
    path = tmp_path / "evaluations.jsonl"
    assert _io.read_jsonl(str(path)) == []
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "fitn')
    assert _io.read_jsonl(str(path)) == [{"id": 1}, {"id": 2}]


def test_append_jsonl_appends_and_keeps_records_after_a_torn_line_whole(tmp_path):
    path = tmp_path / "runs" / "evaluations.jsonl"
    _io.append_jsonl(str(path), [{"id": 1}, {"id": 2}])
    _io.append_jsonl(str(path), [{"id": 3}])
    assert _io.read_jsonl(str(path)) == [{"id": 1}, {"id": 2}, {"id": 3}]
    with open(path, "a") as handle:  # a crash in the middle of a line
        handle.write('{"id": 4, "stat')
    _io.append_jsonl(str(path), [{"id": 5}])
    assert _io.read_jsonl(str(path)) == [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 5}]
    _io.append_jsonl(str(path), [])
    assert path.read_text().endswith('{"id": 5}\n')


def test_save_figure_writes_a_png_atomically(tmp_path):
    figure, axes = _io.new_figure(figsize=(3, 2))
    axes.plot(np.arange(5), np.arange(5) ** 2)
    path = _io.save_figure(figure, str(tmp_path / "plots" / "curve.png"), dpi=50)
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path / "plots") == ["curve.png"]
