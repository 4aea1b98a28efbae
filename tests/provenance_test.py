"""tfrobust._provenance: the git revision a result was produced at, and whether the tree was dirty."""

import os
import subprocess

import pytest

from tfrobust import _provenance

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(folder, *args):
    # A fixed identity and no user config: the test does not depend on the machine's git setup.
    environment = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    command = ["git", "-C", str(folder), "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout.strip()


def test_revision_of_the_checkout_tfrobust_runs_from():
    record = _provenance.git_revision()
    assert record["revision"] == _git(REPO, "rev-parse", "HEAD")
    assert isinstance(record["dirty"], bool)


def test_revision_and_dirty_flag_in_a_fresh_repository(tmp_path, monkeypatch):
    _git(tmp_path, "init", "-q")
    (tmp_path / "losses.py").write_text("VALUE = 1\n")
    _git(tmp_path, "add", "losses.py")
    _git(tmp_path, "commit", "-q", "-m", "first")
    monkeypatch.setattr(_provenance, "_PACKAGE_ROOT", str(tmp_path))
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert _provenance.git_revision() == {"revision": head, "dirty": False}
    # An untracked file (a results folder) leaves the code as committed ...
    (tmp_path / "results.csv").write_text("run,accuracy\n")
    assert _provenance.git_revision() == {"revision": head, "dirty": False}
    # ... a changed tracked file does not.
    (tmp_path / "losses.py").write_text("VALUE = 2\n")
    assert _provenance.git_revision() == {"revision": head, "dirty": True}
    assert _provenance.short_revision(_provenance.git_revision()) == f"revision {head[:7]} (dirty)"


def test_outside_a_repository_the_revision_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(_provenance, "_PACKAGE_ROOT", str(tmp_path))
    # tmp_path may lie inside some repository on a developer's machine; GIT_CEILING_DIRECTORIES
    # stops git's search for one at tmp_path's parent.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    record = _provenance.git_revision()
    assert record == {"revision": "unknown", "dirty": None}
    assert _provenance.short_revision(record) == "revision unknown"


@pytest.mark.parametrize(
    "record, text",
    [({"revision": "0123456789abcdef", "dirty": False}, "revision 0123456"), ({}, "revision unknown")],
)
def test_short_revision(record, text):
    assert _provenance.short_revision(record) == text


def test_describe_machine_names_cores_and_tensorflow():
    import tensorflow as tf

    text = _provenance.describe_machine()
    assert f"{os.cpu_count()} CPU cores" in text and f"TensorFlow {tf.__version__}" in text
