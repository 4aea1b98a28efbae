"""Jobs for the worker-process tests, kept free of TensorFlow so spawned workers start fast."""

import os


def square_or_crash(job):
    """Job (marker, value): dies like a segfault the first time it sees a new marker path, or always for "always"."""
    marker, value = job
    if marker == "always":
        os._exit(3)
    if marker and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    return value * value


def raise_for_negative(job):
    """Job `value`: its square, or a ValueError for a negative value (a job that raises in a worker)."""
    if job < 0:
        raise ValueError(f"negative job {job}")
    return job * job
