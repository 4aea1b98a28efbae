"""CMA-ES search over TaylorLoss coefficients (the library behind `python -m search.evolve`).

Each generation: generate candidates with DEAP's CMA-ES, draw the
generation's tasks, evaluate, update the strategy, log, checkpoint. DEAP's
`eaGenerateUpdate` has no checkpoint or stop criterion, hence this loop.

Outputs in `output_dir`:
  best_coefficients.json  the selected loss, loadable with `TaylorLoss.from_file`
  evaluations.jsonl       one line per candidate evaluation
  checkpoint.pkl          CMA-ES state, history and random state (atomic)
  fitness.png             best and mean fitness per generation
  loss_curve.png          the selected loss against CE and MAE
  events.*                TensorBoard scalars
"""

import dataclasses
import datetime
import json
import os
import pickle
import platform
import shlex
import sys
import time

import numpy as np

from tfrobust import _io
from tfrobust.losses import taylor
from tfrobust.search import evaluation
from tfrobust.search import tasks as tasks_lib

CHECKPOINT = "checkpoint.pkl"
EVALUATIONS = "evaluations.jsonl"
BEST = "best_coefficients.json"


@dataclasses.dataclass
class SearchConfig:
    """Every setting of a search run (the flags of `search.evolve`)."""

    output_dir: str = "runs/evolve"
    population_size: int = 16
    generations: int = 20
    sigma: float = 0.5
    seed: int = 0
    order: int = 3
    task_suite: str = "default"
    tasks_per_generation: int = 0  # 0: the suite's own number
    fitness_split: str = "clean"
    init: str = "cross_entropy_taylor3"
    evaluator: str = "auto"
    executor: str = "inline"
    num_workers: int = 2
    ray_address: str = ""
    distribution_strategy: str = "off"
    selection_repeats: int = 1  # final selection: seeds per suite task
    selection_candidates: int = 6  # final selection: how many top candidates to re-score
    resume: bool = False
    command: str = ""

    def validate(self):
        if self.population_size < 2:
            raise ValueError(f"--population_size must be at least 2 (CMA-ES needs to rank); got {self.population_size}.")
        if self.generations < 1:
            raise ValueError(f"--generations must be at least 1; got {self.generations}.")
        if not self.sigma > 0:
            raise ValueError(f"--sigma must be positive; got {self.sigma}.")
        if self.evaluator not in evaluation.EVALUATORS:
            raise ValueError(f"Unknown --evaluator {self.evaluator!r}; choose one of {list(evaluation.EVALUATORS)}.")
        if self.executor not in evaluation.EXECUTORS:
            raise ValueError(f"Unknown --executor {self.executor!r}; choose one of {list(evaluation.EXECUTORS)}.")
        from tfrobust import distribute

        if self.distribution_strategy not in distribute.STRATEGIES:
            raise ValueError(
                f"Unknown --distribution_strategy {self.distribution_strategy!r}; "
                f"choose one of {list(distribute.STRATEGIES)}."
            )
        taylor.num_coefficients(self.order)
        initial_centroid(self.init, self.order)
        tasks_lib.load_suite(self.task_suite, self.fitness_split)

    def search_key(self):
        """The settings that define the search itself (a resumed run must match them)."""
        keys = ("population_size", "sigma", "seed", "order", "task_suite", "tasks_per_generation",
                "fitness_split", "init")
        return {k: getattr(self, k) for k in keys}


def initial_centroid(init, order):
    """The CMA-ES starting point: a preset name (same order) or "zeros"."""
    if init == "zeros":
        return np.zeros(taylor.num_coefficients(order))
    info = taylor.TaylorLoss.preset_info(init)
    if info["order"] != order:
        raise ValueError(f"--init preset {init!r} has order {info['order']}, not --order={order}.")
    return np.array(info["coefficients"], dtype=float)


def _creator():
    from deap import base, creator

    if not hasattr(creator, "TfrobustFitness"):
        creator.create("TfrobustFitness", base.Fitness, weights=(1.0,))
        creator.create("TfrobustIndividual", list, fitness=creator.TfrobustFitness)
    return creator


class _Progress:
    def __init__(self, total, printer):
        self.total = total
        self.printer = printer
        self.start = time.perf_counter()
        self.done = 0

    def report(self, generation, best, mean, sigma, evaluations, elapsed_generation, modes):
        self.done += 1
        elapsed = time.perf_counter() - self.start
        remaining = (self.total - self.done) * elapsed / self.done
        self.printer(
            f"gen {generation + 1}/{self.total}  best {best:.4f}  mean {mean:.4f}  sigma {sigma:.4f}  "
            f"{evaluations / max(elapsed_generation, 1e-9):.2f} evals/s  ETA {remaining:.0f}s  [{modes}]"
        )


def _read_evaluations(path, before_generation):
    """Valid records of generations < `before_generation` (drops a torn last line)."""
    return [r for r in _io.read_jsonl(path) if r.get("generation", 1 << 30) < before_generation]


def _prepare_output(config):
    os.makedirs(config.output_dir, exist_ok=True)
    checkpoint_path = os.path.join(config.output_dir, CHECKPOINT)
    has_checkpoint = os.path.exists(checkpoint_path)
    if has_checkpoint and not config.resume:
        raise FileExistsError(
            f"{config.output_dir!r} already holds a search checkpoint. Pass --resume to continue it, "
            "or choose another --output_dir; nothing was overwritten."
        )
    if not has_checkpoint and any(
        os.path.exists(os.path.join(config.output_dir, name)) for name in (EVALUATIONS, BEST)
    ):
        raise FileExistsError(
            f"{config.output_dir!r} holds another run's outputs but no checkpoint; choose an empty "
            "--output_dir. Nothing was overwritten."
        )
    if has_checkpoint:
        with open(checkpoint_path, "rb") as handle:
            state = pickle.load(handle)
        if state["search_key"] != config.search_key():
            raise ValueError(
                f"--resume: the checkpoint in {config.output_dir!r} was made with {state['search_key']}, "
                f"which differs from this run's {config.search_key()}."
            )
        return state
    return None


def run_search(config, printer=print):
    """Runs (or resumes) a search; returns the record written to best_coefficients.json."""
    from deap import cma

    config.validate()
    suite = tasks_lib.load_suite(config.task_suite, config.fitness_split)
    if config.tasks_per_generation:
        suite = dataclasses.replace(suite, tasks_per_generation=config.tasks_per_generation)
    state = _prepare_output(config)
    creator = _creator()
    evaluations_path = os.path.join(config.output_dir, EVALUATIONS)

    if state is None:
        strategy = cma.Strategy(
            centroid=initial_centroid(config.init, config.order).tolist(),
            sigma=config.sigma,
            lambda_=config.population_size,
        )
        state = {
            "search_key": config.search_key(),
            "config": dataclasses.asdict(config),
            "generation": 0,
            "strategy": strategy,
            "history": [],
            "best": None,
            "elapsed": 0.0,
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        }
    else:
        printer(f"Resuming {config.output_dir} at generation {state['generation'] + 1}.")
        # Drop evaluations of the generation that was interrupted.
        kept = _read_evaluations(evaluations_path, state["generation"])
        _io.write_text(evaluations_path, "".join(json.dumps(r) + "\n" for r in kept))

    writer = _summary_writer(config.output_dir)
    executor = evaluation.make_executor(
        config.executor, num_workers=config.num_workers, ray_address=config.ray_address or None
    )
    progress = _Progress(config.generations - state["generation"], printer)
    printer(
        f"Search: population {config.population_size}, {config.generations} generations, suite "
        f"{suite.name!r} ({len(suite.tasks)} tasks, {suite.tasks_per_generation} per generation), "
        f"evaluator {config.evaluator}, executor {config.executor}, outputs in {config.output_dir}"
    )
    try:
        while state["generation"] < config.generations:
            generation = state["generation"]
            started = time.perf_counter()
            strategy = state["strategy"]
            # DEAP samples with numpy's global generator: seed it per generation,
            # so the candidates depend only on (seed, generation, CMA-ES state).
            np.random.seed(np.random.SeedSequence([config.seed, generation]).generate_state(1)[0])
            individuals = strategy.generate(creator.TfrobustIndividual)
            instances = suite.draw(generation, config.seed)
            results, modes = evaluation.evaluate_generation(
                np.array(individuals), instances, executor, evaluator=config.evaluator,
                fitness_split=suite.fitness_split, strategy=config.distribution_strategy,
            )
            for individual, result in zip(individuals, results):
                individual.fitness.values = (result.fitness,)
            strategy.update(individuals)
            fitnesses = np.array([r.fitness for r in results])
            best_index = int(np.argmax(fitnesses))
            seconds = time.perf_counter() - started
            with open(evaluations_path, "a") as handle:
                for member, result in enumerate(results):
                    handle.write(json.dumps({
                        "generation": generation, "member": member, "coefficients": result.coefficients,
                        "accuracies": result.accuracies, "fitness": result.fitness,
                        "seconds": result.seconds, "status": result.status,
                        **({"error": result.error} if result.error else {}),
                    }) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            entry = {
                "generation": generation,
                "best": float(fitnesses[best_index]),
                "mean": float(fitnesses.mean()),
                "sigma": float(strategy.sigma),
                "seconds": seconds,
                "best_coefficients": results[best_index].coefficients,
                "centroid": np.asarray(strategy.centroid).tolist(),
                "tasks": [i.key for i in instances],
                "evaluators": sorted(set(modes.values())),
            }
            state["history"].append(entry)
            if state["best"] is None or entry["best"] > state["best"]["fitness"]:
                state["best"] = {"fitness": entry["best"], "coefficients": entry["best_coefficients"], "generation": generation}
            state["generation"] = generation + 1
            state["elapsed"] += seconds
            _io.write_bytes(os.path.join(config.output_dir, CHECKPOINT), pickle.dumps(state))
            _log_scalars(writer, entry)
            progress.report(generation, entry["best"], entry["mean"], entry["sigma"], len(results), seconds,
                            ",".join(entry["evaluators"]))
            _plot_fitness(state["history"], os.path.join(config.output_dir, "fitness.png"))
        record = _finalise(config, suite, state, executor, printer)
    finally:
        executor.close()
        if writer is not None:
            writer.close()
    return record


def _finalise(config, suite, state, executor, printer):
    """Re-scores the best candidates and the final centroid on fixed suite tasks; writes outputs.

    Fitness during the search is measured on tasks drawn anew each generation,
    so the best single score is partly luck of the draw. The final selection
    scores a few strong candidates on the same fixed task instances and keeps
    the best: the selected loss is the one written to best_coefficients.json.
    """
    best_path = os.path.join(config.output_dir, BEST)
    candidates = [np.asarray(state["history"][-1]["centroid"])]
    ranked = sorted(state["history"], key=lambda e: -e["best"])
    for entry in ranked[: max(config.selection_candidates - 1, 1)]:
        candidates.append(np.asarray(entry["best_coefficients"]))
    instances = suite.fixed_instances(config.seed, config.selection_repeats)
    results, _ = evaluation.evaluate_generation(
        np.array(candidates), instances, executor, evaluator=config.evaluator,
        fitness_split=suite.fitness_split, strategy=config.distribution_strategy,
    )
    winner = int(np.argmax([r.fitness for r in results]))
    printer(
        "Final selection on all {} suite tasks: ".format(len(instances))
        + ", ".join(f"{'centroid' if i == 0 else 'cand' + str(i)} {r.fitness:.4f}" for i, r in enumerate(results))
    )
    provenance = {
        "method": "CMA-ES search (tfrobust.search.evolve)",
        "command": config.command or "(library call)",
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "seed": config.seed,
        "budget": {
            "population_size": config.population_size,
            "generations": config.generations,
            "evaluations": config.population_size * config.generations,
            "task_suite": suite.to_dict(),
        },
        "fitness": results[winner].fitness,
        "fitness_definition": f"mean accuracy on the {suite.fitness_split} validation split over all "
                              f"{len(instances)} suite task instances (final selection)",
        "search_best_fitness": state["best"]["fitness"],
        "wall_time_s": round(state["elapsed"], 1),
        "machine": describe_machine(),
        "selected": "centroid" if winner == 0 else f"best of a generation (rank {winner})",
    }
    record = taylor.preset_record(
        f"evolved_seed{config.seed}", f"TaylorLoss evolved by search.evolve on suite {suite.name!r}",
        results[winner].coefficients, config.order, provenance,
    )
    record["selection"] = [{"coefficients": r.coefficients, "fitness": r.fitness, "accuracies": r.accuracies}
                           for r in results]
    taylor.write_json_atomic(best_path, record)
    _plot_loss(record, os.path.join(config.output_dir, "loss_curve.png"))
    printer(f"Best coefficients: {best_path}  (fitness {results[winner].fitness:.4f})")
    printer(f"Outputs: {config.output_dir}/{{{BEST}, {EVALUATIONS}, {CHECKPOINT}, fitness.png, loss_curve.png}}")
    return record


def _summary_writer(directory):
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - TensorBoard logs need TensorFlow
        return None
    return tf.summary.create_file_writer(directory)


def _log_scalars(writer, entry):
    if writer is None:
        return
    import tensorflow as tf

    with writer.as_default():
        for name in ("best", "mean", "sigma", "seconds"):
            tf.summary.scalar(f"fitness/{name}" if name in ("best", "mean") else name, entry[name],
                              step=entry["generation"])
    writer.flush()


def _plot_fitness(history, path):
    generations = [e["generation"] + 1 for e in history]
    figure, axis = _io.new_figure()
    axis.plot(generations, [e["best"] for e in history], marker="o", label="best")
    axis.plot(generations, [e["mean"] for e in history], marker=".", label="mean")
    axis.set_xlabel("generation")
    axis.set_ylabel("fitness (mean validation accuracy)")
    axis.set_title("CMA-ES fitness")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    _io.save_figure(figure, path)


def _plot_loss(record, path):
    import keras

    from tfrobust import plotting
    from tfrobust.losses import MeanAbsoluteError, TaylorLoss

    plotting.plot_loss_curves(
        {
            "evolved TaylorLoss": TaylorLoss(record["coefficients"], order=record["order"]),
            "cross-entropy": keras.losses.CategoricalCrossentropy(),
            "MAE": MeanAbsoluteError(),
        },
        path,
        title="Evolved loss vs CE and MAE",
    )


def describe_machine():
    """CPU count, GPUs and software versions, for provenance."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"{len(gpus)} GPU(s), Python {platform.python_version()}, TensorFlow {tf.__version__}"
    )


def command_line():
    """The command that started this process, for provenance."""
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), "-m", "search.evolve"] + sys.argv[1:])
