"""Evolve TaylorLoss coefficients with CMA-ES on noisy-label tasks.

    python -m search.evolve --output_dir=runs/evolve
    python -m search.evolve --output_dir=runs/evolve --resume   # after a kill, a failure or to extend

Every flag is a field of `tfrobust.search.evolve.SearchConfig` (its default,
help text and choices come from there); the work is done by `run_search`,
which notebooks call directly. Exits non-zero with the cause when the
search's evaluations fail. Load the result with
`tfrobust.losses.TaylorLoss.from_file("runs/evolve/best_coefficients.json")`.
"""

import dataclasses
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust.search import checkpoint, evolve  # noqa: E402

FLAGS = flags.FLAGS
_FIELDS = [f for f in dataclasses.fields(evolve.SearchConfig) if f.name != "command"]
for _field in _FIELDS:
    _help = _field.metadata["help"]
    if _field.name in evolve.CHOICES:
        flags.DEFINE_enum(_field.name, _field.default, list(evolve.CHOICES[_field.name]), _help)
    elif isinstance(_field.default, bool):
        flags.DEFINE_bool(_field.name, _field.default, _help)
    elif isinstance(_field.default, int):
        flags.DEFINE_integer(_field.name, _field.default, _help)
    elif isinstance(_field.default, float):
        flags.DEFINE_float(_field.name, _field.default, _help)
    else:
        flags.DEFINE_string(_field.name, _field.default, _help)


def main(argv):
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # expected retracing across tasks of different sizes
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = evolve.SearchConfig(**{f.name: FLAGS[f.name].value for f in _FIELDS}, command=evolve.command_line())
    try:
        evolve.run_search(config)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    except (evolve.SearchFailedError, checkpoint.CheckpointError) as error:
        raise SystemExit(f"search.evolve stopped: {error}") from None


if __name__ == "__main__":
    app.run(main)
