"""Where a result came from: the git revision of the code that produced it, and the machine.

Every results file and preset that tfrobust writes records `provenance()`,
so a table in the README can name the revision it was produced at, and a
reader can tell whether the tree had uncommitted changes (``dirty``).
"""

import os
import platform
import subprocess

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git(*args):
    try:
        completed = subprocess.run(
            ["git", "-C", _PACKAGE_ROOT, *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def git_revision():
    """`{"revision": <full hash>, "dirty": bool}` of the checkout tfrobust runs from.

    ``dirty`` is true when tracked files under the checkout differ from the
    commit. Returns `{"revision": "unknown", "dirty": None}` for an installed
    (non-git) copy or where git is missing.
    """
    revision = _git("rev-parse", "HEAD")
    if not revision:
        return {"revision": "unknown", "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"revision": revision, "dirty": bool(status) if status is not None else None}


def short_revision(record):
    """`"revision abc1234"` (with `" (dirty)"` where it applies) for a provenance record."""
    revision = record.get("revision", "unknown")
    text = f"revision {revision[:7]}" if revision != "unknown" else "revision unknown"
    return text + (" (dirty)" if record.get("dirty") else "")


def describe_machine():
    """CPU count, GPUs and software versions, for provenance."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{len(gpus)} GPU(s), Python {platform.python_version()}, TensorFlow {tf.__version__}"
    )
