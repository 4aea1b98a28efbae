"""Evolve TaylorLoss coefficients with CMA-ES on noisy-label tasks.

    python -m search.evolve --output_dir=runs/evolve

The work is done by `tfrobust.search.evolve.run_search`, which notebooks can
call directly. Load the result with
`tfrobust.losses.TaylorLoss.from_file("runs/evolve/best_coefficients.json")`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust.search import evolve  # noqa: E402

_DEFAULTS = evolve.SearchConfig()
FLAGS = flags.FLAGS
flags.DEFINE_integer("population_size", _DEFAULTS.population_size, "CMA-ES population (lambda), at least 2.")
flags.DEFINE_integer("generations", _DEFAULTS.generations, "Number of CMA-ES generations.")
flags.DEFINE_float("sigma", _DEFAULTS.sigma, "Initial CMA-ES step size.")
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Seed of the whole search (candidates, tasks, data, weights).")
flags.DEFINE_integer("order", _DEFAULTS.order, "TaylorLoss order (2 + order*(order+1)/2 coefficients).")
flags.DEFINE_string("task_suite", _DEFAULTS.task_suite, "Named suite (default, bundled, bundled_long, tiny) or a JSON suite file.")
flags.DEFINE_integer("tasks_per_generation", 0, "Tasks drawn per generation (0: the suite's own number).")
flags.DEFINE_enum("fitness_split", "clean", ["clean", "noisy"],
                  "Score on the clean validation split, or on a noisy one (no clean data needed).")
flags.DEFINE_string("init", _DEFAULTS.init, "Starting point: a TaylorLoss preset of the same order, or 'zeros'.")
flags.DEFINE_enum("evaluator", "auto", ["auto", "vectorized", "per_candidate"],
                  "auto: train a whole generation at once where the architecture allows, else per candidate.")
flags.DEFINE_enum("executor", "inline", ["inline", "processes", "ray"], "Where evaluation jobs run.")
flags.DEFINE_integer("num_workers", 2, "Worker processes for --executor=processes.")
flags.DEFINE_string("ray_address", "", "Address of an existing Ray cluster (empty: a local Ray instance).")
flags.DEFINE_enum("distribution_strategy", "off", ["off", "one_device", "mirrored"],
                  "tf.distribute strategy each model trains under (mirrored: all GPUs).")
flags.DEFINE_integer("selection_repeats", 1, "Final selection: seeds per suite task.")
flags.DEFINE_string("output_dir", _DEFAULTS.output_dir, "Folder for checkpoint, logs, plots and the result.")
flags.DEFINE_bool("resume", False, "Continue the search checkpointed in --output_dir.")


def main(argv):
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # expected retracing across tasks of different sizes
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = evolve.SearchConfig(
        output_dir=FLAGS.output_dir, population_size=FLAGS.population_size, generations=FLAGS.generations,
        sigma=FLAGS.sigma, seed=FLAGS.seed, order=FLAGS.order, task_suite=FLAGS.task_suite,
        tasks_per_generation=FLAGS.tasks_per_generation, fitness_split=FLAGS.fitness_split, init=FLAGS.init,
        evaluator=FLAGS.evaluator, executor=FLAGS.executor, num_workers=FLAGS.num_workers,
        ray_address=FLAGS.ray_address, distribution_strategy=FLAGS.distribution_strategy,
        selection_repeats=FLAGS.selection_repeats, resume=FLAGS.resume, command=evolve.command_line(),
    )
    try:
        evolve.run_search(config)
    except (ValueError, FileExistsError) as error:
        raise app.UsageError(str(error)) from None


if __name__ == "__main__":
    app.run(main)
