"""The run folder: what --resume finds there, and that one bad checkpoint write cannot lose a run."""

import json
import os
import pickle

import pytest

from tfrobust.search import checkpoint

KEY = {"population_size": 4, "seed": 0}


def _state(generation):
    return {"generation": generation, "strategy": "cma-es state", "search_key": KEY}


def test_a_new_run_writes_its_marker_and_refuses_a_run_folder(tmp_path):
    folder = str(tmp_path / "run")
    assert not checkpoint.has_run(folder)
    assert checkpoint.open_run(folder, KEY, resume=False) is None
    marker = json.loads((tmp_path / "run" / checkpoint.RUN).read_text())
    assert marker["search_key"] == KEY and "revision" in marker and "started" in marker
    assert checkpoint.has_run(folder)
    with pytest.raises(FileExistsError, match="Pass --resume"):
        checkpoint.open_run(folder, KEY, resume=False)


def test_a_folder_with_another_runs_outputs_is_refused(tmp_path):
    (tmp_path / checkpoint.EVALUATIONS).write_text("{}\n")
    with pytest.raises(FileExistsError, match="another run's outputs"):
        checkpoint.open_run(str(tmp_path), KEY, resume=False)
    assert sorted(os.listdir(tmp_path)) == [checkpoint.EVALUATIONS]


def test_resume_where_there_is_no_run_says_what_was_expected(tmp_path):
    for folder, where in ((tmp_path / "typo", "does not exist"), (tmp_path, "holds none of them")):
        with pytest.raises(FileNotFoundError, match=f"holds no search run: expected run.json .* {where}"):
            checkpoint.open_run(str(folder), KEY, resume=True)
    assert not (tmp_path / "typo").exists()


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path):
    checkpoint.open_run(str(tmp_path), KEY, resume=False)
    lines = []
    assert checkpoint.open_run(str(tmp_path), KEY, resume=True, printer=lines.append) is None
    assert "starting it over" in lines[0]
    with pytest.raises(ValueError, match="differs from this run"):
        checkpoint.open_run(str(tmp_path), {**KEY, "seed": 1}, resume=True)


def test_resume_continues_from_the_newest_checkpoint_and_keeps_the_previous(tmp_path):
    checkpoint.open_run(str(tmp_path), KEY, resume=False)
    checkpoint.save_checkpoint(str(tmp_path), _state(1))
    checkpoint.save_checkpoint(str(tmp_path), _state(2))
    assert pickle.loads((tmp_path / checkpoint.PREVIOUS).read_bytes())["generation"] == 1
    assert checkpoint.open_run(str(tmp_path), KEY, resume=True)["generation"] == 2
    with pytest.raises(ValueError, match="differs from this run"):
        checkpoint.open_run(str(tmp_path), {**KEY, "seed": 1}, resume=True)


@pytest.mark.parametrize("damage", [b"", b"garbage", None])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path, damage):
    checkpoint.save_checkpoint(str(tmp_path), _state(1))
    checkpoint.save_checkpoint(str(tmp_path), _state(2))
    current = tmp_path / checkpoint.CHECKPOINT
    if damage is None:  # killed between keeping the previous and writing the new one
        current.unlink()
    else:
        current.write_bytes(damage if damage else pickle.dumps(_state(2))[:20])  # torn
    lines = []
    state = checkpoint.open_run(str(tmp_path), KEY, resume=True, printer=lines.append)
    assert state["generation"] == 1
    assert "resuming from the previous checkpoint" in lines[0] and str(current) in lines[0]


def test_no_readable_checkpoint_names_the_files_and_the_way_out(tmp_path):
    checkpoint.open_run(str(tmp_path), KEY, resume=False)
    (tmp_path / checkpoint.CHECKPOINT).write_bytes(b"\x80\x04garbage")
    (tmp_path / checkpoint.PREVIOUS).write_bytes(pickle.dumps(["not", "a", "state"]))
    with pytest.raises(checkpoint.CheckpointError) as raised:
        checkpoint.open_run(str(tmp_path), KEY, resume=True)
    message = str(raised.value)
    assert str(tmp_path / checkpoint.CHECKPOINT) in message and str(tmp_path / checkpoint.PREVIOUS) in message
    assert "delete checkpoint.pkl and checkpoint.prev.pkl" in message and "Restore it from a backup" in message
