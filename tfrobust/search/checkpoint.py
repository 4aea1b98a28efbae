"""The folder a search runs in: the run marker, the checkpoint and its previous copy.

A run writes `run.json` (its settings) before its first generation and
`checkpoint.pkl` after every generation; the checkpoint it replaces is kept
as `checkpoint.prev.pkl`. That tells apart the cases `--resume` meets:

  checkpoint readable          continue after its generation
  checkpoint damaged           continue from the previous one, and say so
  run.json, no checkpoint      killed in generation 0: start over cleanly
  none of these                not a run folder (a mistyped path?): refuse
"""

import datetime
import json
import os
import pickle

from tfrobust import _io
from tfrobust import _provenance

RUN = "run.json"
CHECKPOINT = "checkpoint.pkl"
PREVIOUS = "checkpoint.prev.pkl"
EVALUATIONS = "evaluations.jsonl"
BEST = "best_coefficients.json"


class CheckpointError(RuntimeError):
    """No readable checkpoint where a run's checkpoint should be."""


def has_run(output_dir):
    """Whether `output_dir` holds a search run (finished, checkpointed, or killed before its first checkpoint).

    A notebook that should continue a run when there is one and start one
    otherwise passes `resume=has_run(output_dir)`.
    """
    return any(os.path.exists(os.path.join(output_dir, name)) for name in (RUN, CHECKPOINT, PREVIOUS))


def open_run(output_dir, search_key, resume, printer=print):
    """Prepares `output_dir` for a run; returns the checkpointed state to continue, or None to start.

    Raises:
        FileExistsError: a new run (resume false) in a folder that holds a run
            or another run's outputs; nothing is overwritten.
        FileNotFoundError: `resume` on a folder that holds no run.
        ValueError: `resume` with settings other than the run's.
        CheckpointError: `resume` where no checkpoint can be read.
    """
    if not resume:
        if has_run(output_dir):
            raise FileExistsError(
                f"{output_dir!r} already holds a search run. Pass --resume to continue it, or choose another "
                "--output_dir; nothing was overwritten."
            )
        if any(os.path.exists(os.path.join(output_dir, name)) for name in (EVALUATIONS, BEST)):
            raise FileExistsError(
                f"{output_dir!r} holds another run's outputs but no checkpoint; choose an empty --output_dir. "
                "Nothing was overwritten."
            )
        _io.write_json(os.path.join(output_dir, RUN), {
            "search_key": search_key,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            **_provenance.git_revision(),
        })
        return None
    if not has_run(output_dir):
        where = "does not exist" if not os.path.isdir(output_dir) else "exists but holds none of them"
        raise FileNotFoundError(
            f"--resume: {output_dir!r} holds no search run: expected {RUN} (written when a run starts) and "
            f"{CHECKPOINT} (written after each generation) there, and the folder {where}. Check the "
            "--output_dir path, or drop --resume to start a new search in it."
        )
    state = load_checkpoint(output_dir, printer)
    saved_key = state["search_key"] if state is not None else _read_marker(output_dir)["search_key"]
    if saved_key != search_key:
        raise ValueError(
            f"--resume: the run in {output_dir!r} was made with {saved_key}, which differs from this "
            f"run's {search_key}. Resume with the same settings, or start a new run in another --output_dir."
        )
    if state is None:
        printer(f"{output_dir} holds a run stopped before its first checkpoint: starting it over.")
    return state


def _read_marker(output_dir):
    path = os.path.join(output_dir, RUN)
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"{path} is unreadable ({error}) and there is no checkpoint beside it. The run never finished "
            f"a generation: delete {RUN} and start the search again without --resume."
        ) from None


def load_checkpoint(output_dir, printer=print):
    """The newest readable checkpoint's state; None if there is none at all.

    Raises CheckpointError, naming each file and how to recover, when
    checkpoint files exist but none can be read.
    """
    problems = []
    for name in (CHECKPOINT, PREVIOUS):
        path = os.path.join(output_dir, name)
        if not os.path.exists(path):
            continue
        try:
            with open(path, "rb") as handle:
                state = pickle.load(handle)
            if not isinstance(state, dict) or not {"generation", "strategy", "search_key"} <= set(state):
                raise ValueError("not a search checkpoint")
        except Exception as error:  # a torn or foreign file raises any of a dozen types
            problems.append(f"{path} ({type(error).__name__}: {error})")
            continue
        if name == PREVIOUS:
            printer(
                f"Warning: {os.path.join(output_dir, CHECKPOINT)} is "
                + ("unreadable" if problems else "missing")
                + f"; resuming from the previous checkpoint {path}, after generation {state['generation']}."
            )
        return state
    if problems:
        raise CheckpointError(
            f"Cannot resume from {output_dir!r}: no checkpoint is readable: {'; '.join(problems)}. The file "
            "was damaged (a torn write, a full disk or an external edit). Restore it from a backup, or start "
            f"over: delete {CHECKPOINT} and {PREVIOUS} and run with --resume again (the run restarts from "
            "generation 0), or use a new --output_dir."
        )
    return None


def save_checkpoint(output_dir, state):
    """Writes `state` atomically, keeping the checkpoint it replaces as the previous one."""
    current = os.path.join(output_dir, CHECKPOINT)
    data = pickle.dumps(state)
    if os.path.exists(current):
        os.replace(current, os.path.join(output_dir, PREVIOUS))
    _io.write_bytes(current, data)
