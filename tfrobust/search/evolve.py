"""CMA-ES search over TaylorLoss coefficients (the library behind `python -m search.evolve`).

Each generation: generate candidates with DEAP's CMA-ES, draw the
generation's tasks, evaluate, update the strategy, log, checkpoint. DEAP's
`eaGenerateUpdate` has no checkpoint or stop criterion, hence this loop.

Failures show and stop the run: the progress line counts the failed and
non-finite evaluations of each generation, the first failure's traceback is
printed once, and a generation in which every evaluation failed, or a run
whose failures pass `max_failure_fraction`, raises `SearchFailedError`
before that generation is checkpointed, so `--resume` continues once the
cause is fixed.

Outputs in `output_dir` (file names in `tfrobust.search.checkpoint`):
  best_coefficients.json  the selected loss, loadable with `TaylorLoss.from_file`
  finalists/<label>.json  every finalist of the final selection, each loadable the same way
  evaluations.jsonl       one line per candidate evaluation, with its status
  run.json                the run's settings, written before generation 0
  checkpoint.pkl          CMA-ES state, history and random state (atomic), and
  checkpoint.prev.pkl     the one before it
  fitness.png             best and mean fitness per generation
  loss_curve.png          the selected loss against CE and MAE
  events.*                TensorBoard scalars
"""

import dataclasses
import datetime
import json
import os
import re
import shlex
import sys
import time

import numpy as np

from tfrobust import _io
from tfrobust import _provenance
from tfrobust import distribute
from tfrobust.losses import taylor
from tfrobust.search import checkpoint
from tfrobust.search import evaluation
from tfrobust.search import fitness as fitness_lib
from tfrobust.search import population
from tfrobust.search import tasks as tasks_lib
from tfrobust.search.checkpoint import BEST, CHECKPOINT, EVALUATIONS, has_run  # noqa: F401  (public names)

# How the final selection picks its winner (`select_winner`).
SELECTION_RULES = ("fitness", "majority", "guarded")

# The flags of `search.evolve` that take one of a fixed set of values, and where that set lives.
CHOICES = {
    "fitness_split": tasks_lib.FITNESS_SPLITS,
    "evaluator": evaluation.EVALUATORS,
    "executor": evaluation.EXECUTORS,
    "distribution_strategy": distribute.STRATEGIES,
    "population_pooling": population.POOLINGS,
    "selection_rule": SELECTION_RULES,
    "stratify_tasks_by": tasks_lib.STRATIFY_FIELDS,
}


class SearchFailedError(RuntimeError):
    """The search stopped because its evaluations fail; the message names the first error."""


def _setting(default, help_text):
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class SearchConfig:
    """Every setting of a search run; `search.evolve` makes one flag of each (help from `metadata`)."""

    output_dir: str = _setting("runs/evolve", "Folder for the run marker, checkpoint, logs, plots and the result.")
    population_size: int = _setting(16, "CMA-ES population (lambda), at least 2.")
    generations: int = _setting(20, "Number of CMA-ES generations (raise it with --resume to extend a run).")
    sigma: float = _setting(0.5, "Initial CMA-ES step size.")
    seed: int = _setting(0, "Seed of the whole search (candidates, tasks, data, weights).")
    order: int = _setting(3, "TaylorLoss order (2 + order*(order+1)/2 coefficients).")
    task_suite: str = _setting(
        "default", f"Named suite ({', '.join(sorted(tasks_lib.SUITES))}) or the path of a JSON suite file."
    )
    tasks_per_generation: int = _setting(0, "Tasks drawn per generation (0: the suite's own number).")
    stratify_tasks_by: str = _setting(
        "", "Spread each generation's tasks evenly over this task field's values (noise: with 4 tasks a generation "
            "and 4 noise settings, every generation scores each noise setting once) instead of the suite's own "
            "draw (uniform unless the suite sets stratify_by)."
    )
    fitness_split: str = _setting("clean", "Score on the clean validation split, or on a noisy one (no clean data needed).")
    fitness_aggregation: str = _setting(
        "mean", "How a candidate's accuracies over the task instances become its fitness: "
                "[ce_gain/|ce_ratio/|start_gain/]mean, quantile:Q or mean_minus_std:K (ce_*: relative to cross-entropy "
                "trained on the same instance; start_gain: to the --init loss; see tfrobust.search.fitness)."
    )
    init: str = _setting("cross_entropy_taylor3", "Starting point: a TaylorLoss preset of this order or a lower one "
                         "(the same loss, higher-order terms at zero), or 'zeros'.")
    evaluator: str = _setting(
        "auto", "auto: train a whole generation at once where the architecture allows, else per candidate."
    )
    executor: str = _setting("inline", "Where evaluation jobs run.")
    num_workers: int = _setting(2, "Worker processes for --executor=processes.")
    ray_address: str = _setting("", "Address of an existing Ray cluster (empty: a local Ray instance).")
    distribution_strategy: str = _setting("off", "tf.distribute strategy each model trains under (mirrored: all GPUs).")
    population_pooling: str = _setting(
        "fused", "Max pooling of the vectorised evaluator's population models: fused (pooled before the bias and "
                 "activation, gradient to the first maximum, as Keras's MaxPooling2D), or reshape_max, with which "
                 "searches recorded before fused pooling (revision 27a8a9a and earlier) repeat exactly."
    )
    selection_repeats: int = _setting(1, "Final selection: seeds per suite task.")
    selection_suite: str = _setting(
        "", "Final selection's suite (a name or a JSON suite file); empty: --task_suite itself. Use one whose "
            "tasks the search never scored (broad_selection for the broad suite, broad2_selection for broad2)."
    )
    selection_candidates: int = _setting(
        6, "Final selection: candidates re-scored on every suite task (the final centroid and the best of the "
           "strongest generations)."
    )
    selection_include_start: bool = _setting(
        False, "Final selection: also re-score the starting point (--init) and keep it unless a finalist scores "
               "higher, so the search never returns a loss that does worse than its start on the selection tasks "
               "(the start's score is recorded either way)."
    )
    selection_rule: str = _setting(
        "fitness", "How the final selection picks: fitness (the highest final-selection fitness), or majority (with "
                   "--selection_include_start: a finalist replaces the start only if it also beats the start on more "
                   "than half of the selection task instances, so a few large gains cannot outvote many losses), or "
                   "guarded (majority, and on no selection task is the finalist's mean over --selection_repeats below "
                   "the start's by more than the start's seed spread there: the held-out rule's test per column, so a "
                   "large loss on one task cannot hide behind wins on others; needs --selection_repeats of 2 or more)."
    )
    max_failure_fraction: float = _setting(
        0.5, "Stop the search when more than this share of its evaluations failed (raised, or the worker died)."
    )
    resume: bool = _setting(False, "Continue the run in --output_dir (started, checkpointed or finished there).")
    command: str = _setting("", "The command line, for provenance (set by search.evolve).")

    def validate(self):
        """Raises ValueError naming the first bad setting and its fix."""
        for name, least in (("population_size", 2), ("generations", 1), ("order", 1), ("num_workers", 1),
                            ("tasks_per_generation", 0), ("selection_repeats", 1), ("selection_candidates", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                why = {
                    "population_size": " (CMA-ES needs to rank)",
                    "tasks_per_generation": " (0: the suite's own number)",
                }.get(name, "")
                raise ValueError(f"--{name} must be an integer of at least {least}{why}; got {value!r}.")
        if not (isinstance(self.sigma, (int, float)) and np.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"--sigma must be a positive number; got {self.sigma!r}.")
        if not (isinstance(self.max_failure_fraction, (int, float)) and 0 <= self.max_failure_fraction <= 1):
            raise ValueError(f"--max_failure_fraction must be between 0 and 1; got {self.max_failure_fraction!r}.")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"Unknown --{name} {getattr(self, name)!r}; choose one of {list(choices)}.")
        taylor.num_coefficients(self.order)
        if fitness_lib.parse_aggregation(self.fitness_aggregation).needs_start and self.init == "zeros":
            raise ValueError(f"--fitness_aggregation={self.fitness_aggregation} scores candidates against the --init "
                             "loss, and --init=zeros is a constant loss that trains nothing: "
                             "start from a preset, e.g. --init=evolved_bundled.")
        initial_centroid(self.init, self.order)
        tasks_lib.load_suite(self.task_suite, self.fitness_split)
        if self.selection_suite:
            tasks_lib.load_suite(self.selection_suite, self.fitness_split)
        if self.selection_rule in ("majority", "guarded") and not self.selection_include_start:
            raise ValueError(f"--selection_rule={self.selection_rule} compares the finalists with the starting point: "
                             "add --selection_include_start.")
        if self.selection_rule == "guarded" and self.selection_repeats < 2:
            raise ValueError("--selection_rule=guarded compares a finalist with the start's seed spread on each "
                             "selection task, which needs --selection_repeats=2 or more; got "
                             f"{self.selection_repeats}.")

    def search_key(self):
        """The settings that define the search itself (a resumed run must match them)."""
        keys = ("population_size", "sigma", "seed", "order", "task_suite", "tasks_per_generation",
                "fitness_split", "init")
        # Only when not the default: runs checkpointed before the setting existed stay resumable.
        extra = (("fitness_aggregation",) if self.fitness_aggregation != "mean" else ()) + (
            ("population_pooling",) if self.population_pooling != "fused" else ()) + (
            ("stratify_tasks_by",) if self.stratify_tasks_by else ())
        return {k: getattr(self, k) for k in keys + extra}


@dataclasses.dataclass
class SearchResult:
    """What `run_search` returns.

    Attributes:
        record: the selected loss, as written to best_coefficients.json.
        evaluations: every evaluation of the run's generations (the records
            of evaluations.jsonl: generation, member, coefficients,
            accuracies, fitness, status, and the error of a failed one).
        selection: the final selection's results, each with its status.
    """

    record: dict
    evaluations: list
    selection: list

    def status_counts(self):
        """`{status: count}` over the generations' evaluations."""
        counts = {}
        for entry in self.evaluations:
            counts[entry["status"]] = counts.get(entry["status"], 0) + 1
        return counts


def initial_centroid(init, order):
    """The CMA-ES starting point: a preset name or "zeros".

    A preset of a lower order starts a higher-order search from the same
    loss: its vector is a prefix of the higher-order layout (terms sorted by
    degree, `taylor.term_powers`), so the higher-degree terms start at zero.
    That is what a fair order 3 against order 4 comparison needs.
    """
    if init == "zeros":
        return np.zeros(taylor.num_coefficients(order))
    info = taylor.TaylorLoss.preset_info(init)
    if info["order"] > order:
        raise ValueError(f"--init preset {init!r} has order {info['order']}, above --order={order}; "
                         f"use --order={info['order']} or a preset of order {order} or lower.")
    return _padded(info["coefficients"], order)


def _padded(coefficients, order):
    """A coefficient vector of a lower order in the layout of `order`: the same loss (see `initial_centroid`)."""
    vector = np.zeros(taylor.num_coefficients(order))
    vector[: len(coefficients)] = coefficients
    return vector


def loss_coefficients(names):
    """The coefficient vectors of TaylorLoss names (a preset, "taylor:PRESET" or "taylor_file:PATH"), padded
    to the highest order among them: a lower-order vector is a prefix of the higher-order layout (see
    `initial_centroid`), so padding with zeros keeps each loss exactly as it is."""
    from tfrobust.benchmark import _methods

    losses = []
    for name in names:
        if name.startswith(_methods.TAYLOR_FILE_PREFIX):
            losses.append(taylor.TaylorLoss.from_file(name[len(_methods.TAYLOR_FILE_PREFIX):]))
        else:
            losses.append(taylor.TaylorLoss.pretrained(name.removeprefix(_methods.TAYLOR_PRESET_PREFIX)))
    order = max(loss.order for loss in losses)
    return np.stack([_padded(loss.coefficients, order) for loss in losses])


def score_losses(names, suite, *, seed=0, repeats=1, fitness_aggregation="ce_gain/mean", evaluator="auto",
                 pooling="fused", printer=print):
    """Scores TaylorLosses (see `loss_coefficients`) on every task of `suite` (a name, a JSON file or a
    `TaskSuite`), on the task instances a search with this `seed` and `repeats` uses for its final
    selection (`TaskSuite.fixed_instances`), with the search's fitness: the way to ask whether a search's
    winner beats another loss, its starting point say, on the suite that selected it.

    Returns `(instances, results)`: one `evaluation.CandidateResult` per name (accuracies per task instance,
    fitness, status, and cross-entropy's accuracies when the fitness needs them). `printer` gets a
    progress line per training job (task, elapsed time, ETA). `pooling` is the population models' max
    pooling (`search.evolve --population_pooling`).
    """
    suite = suite if isinstance(suite, tasks_lib.TaskSuite) else tasks_lib.load_suite(suite)
    tasks_lib.check_datasets(suite)
    instances = suite.fixed_instances(seed, repeats)
    coefficients = loss_coefficients(names)
    results, _ = evaluation.evaluate_generation(
        coefficients, instances, evaluation.InlineExecutor(progress=printer), evaluator=evaluator,
        fitness_split=suite.fitness_split, aggregation=fitness_aggregation, pooling=pooling, start=coefficients[0],
    )
    return instances, results


def tasks_won(accuracies, other):
    """On how many task instances `accuracies` is strictly above `other` (dicts by instance key; a tie is no win)."""
    return sum(accuracies[key] > other[key] for key in other)


def _task_of(instance_key):
    """The task key of a task instance key ("TASK#SEED")."""
    return instance_key.rpartition("#")[0] or instance_key


def _instances_by_task(instance_keys):
    """`{task key: [its instance keys]}`, in order of first appearance."""
    by_task = {}
    for key in instance_keys:
        by_task.setdefault(_task_of(key), []).append(key)
    return by_task


def tasks_below_spread(accuracies, start):
    """The tasks on which `accuracies` falls short of `start` by more than the start's seed spread.

    Both are dicts by task instance key ("TASK#SEED"); the instances of one task (its
    `--selection_repeats`) are pooled. A task is listed, with `(shortfall, spread)`, when the
    start's mean accuracy over its instances exceeds the other's by more than the sample standard
    deviation (ddof=1) of the start's accuracies there: the test the held-out rule applies per
    column (`tfrobust.benchmark.shipping_verdict`). Raises ValueError when a task has a single
    instance (no spread).
    """
    below = {}
    for task, keys in _instances_by_task(start).items():
        if len(keys) < 2:
            raise ValueError(f"Task {task!r} has one instance: a seed spread needs two or more "
                             "(--selection_repeats=2).")
        reference = np.array([start[k] for k in keys], dtype=float)
        shortfall = float(reference.mean() - np.mean([accuracies[k] for k in keys]))
        spread = float(reference.std(ddof=1))
        if shortfall > spread:
            below[task] = (shortfall, spread)
    return below


def gain_noise(start, others):
    """How much one task instance's accuracy gain over `start` varies between a task's seeds.

    `start` and each of `others` are dicts by task instance key ("TASK#SEED"), as
    the final selection records them. For every loss of `others` and every task
    with two or more instances, the gains (loss minus start, per instance) give
    a sample variance (ddof=1) around that task's mean gain. These are pooled,
    weighted by their degrees of freedom, over all losses and tasks, and over
    the tasks of each noise setting. What the selection measures is a mean gain
    over its instances, so `instances_to_resolve` turns the pooled standard
    deviation into how many instances a given resolution needs.

    Returns `{"all": (sd, dof), NOISE: (sd, dof), ...}`, sd a fraction like the
    accuracies. Raises ValueError when no task has two instances.
    """
    by_task = _instances_by_task(start)
    pooled = {}
    for other in others:
        for task, keys in by_task.items():
            if len(keys) < 2:
                continue
            gains = np.array([other[k] - start[k] for k in keys], dtype=float)
            square_sum = float(((gains - gains.mean()) ** 2).sum())
            for group in ("all", _noise_of(keys[0])):
                total, dof = pooled.get(group, (0.0, 0))
                pooled[group] = (total + square_sum, dof + len(keys) - 1)
    if not pooled:
        raise ValueError("No task has two or more instances: the seed noise of a gain needs "
                         "--selection_repeats=2 or more.")
    return {group: (float(np.sqrt(total / dof)), dof) for group, (total, dof) in pooled.items()}


def instances_to_resolve(sd, resolution, z=2.0):
    """The task instances a mean gain needs for its standard error to be `resolution / z`: a true mean gain
    of `resolution` then lies `z` standard errors from none. `sd` is one instance's (`gain_noise`), in
    the same units as `resolution`. Rounded up; at least 1."""
    if resolution <= 0:
        raise ValueError(f"The resolution must be a positive gain; got {resolution!r}.")
    return max(1, int(np.ceil((z * sd / resolution) ** 2)))


def gain_noise_summary(start, others, resolution=1.0):
    """A sentence to end a table of a final selection with: the seed noise of one instance's gain over `start`
    (`gain_noise` of `others`), and the instances a mean gain of `resolution` points needs to stand 2 standard
    errors from none (`instances_to_resolve`). Empty when no task repeats."""
    try:
        noise = gain_noise(start, others)
    except ValueError:
        return ""
    sd, dof = noise.pop("all")
    by_noise = ", ".join(f"{name} {100 * value:.1f}" for name, (value, _) in noise.items())
    needed = instances_to_resolve(100 * sd, resolution)
    return (f"Seed noise of one instance's gain over the start: {100 * sd:.1f} points (standard deviation "
            f"pooled over the other losses and repeated tasks, {_counted(dof, 'degree')} of freedom; by noise "
            f"setting: {by_noise}). A mean gain of {_counted(resolution, 'point')} stands 2 standard errors from "
            f"none with {_counted(needed, 'instance')} per loss; here each loss has {len(start)}.")


def _counted(number, noun):
    return f"{number:g} {noun}{'' if number == 1 else 's'}"


def select_winner(results, include_start, rule="fitness"):
    """The index of the final selection's winner among `results` (the start last when `include_start`).

    "fitness": the highest fitness; the start, when included, is kept unless a
    finalist scores strictly higher. "majority": the start is kept unless a
    finalist scores higher and also beats it on more than half of the task
    instances; of those finalists, the highest fitness wins. "guarded": as
    majority, and the finalist must not fall below the start by more than the
    start's seed spread on any task (`tasks_below_spread`).
    """
    fitnesses = [r.fitness for r in results]
    if not include_start:
        return int(np.argmax(fitnesses))
    start = results[-1]
    eligible = [k for k in range(len(results) - 1) if results[k].fitness > start.fitness]
    if rule in ("majority", "guarded"):
        eligible = [k for k in eligible
                    if 2 * tasks_won(results[k].accuracies, start.accuracies) > len(start.accuracies)]
    if rule == "guarded":
        eligible = [k for k in eligible if not tasks_below_spread(results[k].accuracies, start.accuracies)]
    return max(eligible, key=lambda k: fitnesses[k]) if eligible else len(results) - 1


def _repeats_tasks(instances):
    """Whether some task appears more than once among `instances` (a seed spread per task exists)."""
    return len(instances) > len({instance.task.key for instance in instances})


def format_scores(names, instances, results):
    """A Markdown table: one row per task instance (cross-entropy's accuracy when measured, then each
    loss's), then each loss's fitness, the number of task instances on which it beats the first loss (what
    `search.evolve --selection_rule=majority` asks of a finalist against the start), with repeats the number
    of tasks on which it falls below the first loss by more than that loss's seed spread (what
    `--selection_rule=guarded` also asks), and its status."""
    reference = results[0].reference_accuracies
    header = ["task"] + (["cross-entropy"] if reference else []) + list(names)
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]

    def summary(label, cells):  # a row below the tasks: the cross-entropy column stays empty
        lines.append(f"| {label} | " + ("| " if reference else "") + " | ".join(cells) + " |")

    for instance in instances:
        cells = [instance.key] + ([f"{100 * reference[instance.key]:.1f}"] if reference else [])
        cells += [f"{100 * result.accuracies[instance.key]:.1f}" for result in results]
        lines.append("| " + " | ".join(cells) + " |")
    first = results[0].accuracies
    summary("**fitness** (x100)", [f"**{100 * r.fitness:+.2f}**" for r in results])
    summary("tasks where it beats the first loss",
            ["(first)"] + [f"{tasks_won(r.accuracies, first)}/{len(instances)}" for r in results[1:]])
    if _repeats_tasks(instances):
        tasks = len({instance.task.key for instance in instances})
        summary("tasks where it falls below the first loss by more than that loss's seed spread",
                ["(first)"] + [f"{len(tasks_below_spread(r.accuracies, first))}/{tasks}" for r in results[1:]])
    summary("status", [r.status for r in results])
    return "\n".join(lines)


def rule_picks(names, instances, results):
    """What each `search.evolve --selection_rule` would keep if the first loss were the start and the others
    its finalists: `{rule: name}` (guarded only when the instances repeat tasks, as it needs a seed spread)."""
    ordered = list(results[1:]) + [results[0]]  # select_winner takes the start last
    names = list(names[1:]) + [names[0]]
    return {rule: names[select_winner(ordered, True, rule)] for rule in SELECTION_RULES
            if rule != "guarded" or _repeats_tasks(instances)}


def _noise_of(instance_key):
    """The noise spec of a task instance key ("DATASET/ARCHITECTURE/NOISE/STEPSxBATCH[/OPT@LR]#SEED")."""
    parts = _task_of(instance_key).split("/")
    budget = max(k for k, part in enumerate(parts) if re.fullmatch(r"\d+x\d+", part))
    return parts[budget - 1]


def selection_report(record, drop="", resolution=1.0):
    """A Markdown table of a search's final selection (`best_coefficients.json`, read as a dict) against its start.

    One row per finalist: fitness, task instances won against the start, tasks below the start's seed spread
    (when the selection repeated tasks), and the mean accuracy gain over the start (points) per noise setting of
    the selection tasks, then the start's own row and the selected loss. Shows where finalists gain and where
    they give up what the start had. Raises ValueError when the search did not re-score its start.

    `drop`, a regular expression, leaves out the task instances whose key it matches (`re.search`): wins, tasks
    below spread and gains are counted over the rest, to ask what a selection without those tasks would have
    said. The fitness column stays the recorded one, over every instance. Raises ValueError when it matches no
    instance, or every one.

    With repeated tasks, the report ends with the seed noise of one instance's gain over the start
    (`gain_noise`, over the finalists that trained) and the instances a mean gain of `resolution` points needs
    to stand 2 standard errors from none (`instances_to_resolve`).
    """
    selection = record.get("selection") or []
    if not selection or selection[-1].get("label") != "start":
        raise ValueError("This search did not re-score its start (run search.evolve with "
                         "--selection_include_start): there is nothing to compare the finalists with.")
    start = selection[-1]["accuracies"]
    dropped = {key for key in start if drop and re.search(drop, key)}
    if drop and not 0 < len(dropped) < len(start):
        raise ValueError(f"--drop_tasks {drop!r} matches {len(dropped)} of the {len(start)} selection instances: "
                         "it must leave out some and keep some (instance keys look like "
                         f"{next(iter(start))!r}).")
    start = {key: value for key, value in start.items() if key not in dropped}
    noises = list(dict.fromkeys(_noise_of(key) for key in start))
    tasks = len({_task_of(key) for key in start})
    repeats = len(start) > tasks
    header = ["loss", "fitness (x100)" + (", all instances" if dropped else ""), "instances won",
              *(["tasks below spread"] if repeats else []),
              *(f"gain at {noise}" for noise in noises)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    trained = []  # the finalists that trained, over the kept instances: the gain noise's sample
    for entry in selection:
        accuracies = {key: value for key, value in entry["accuracies"].items() if key not in dropped}
        ok = entry.get("status", evaluation.STATUS_OK) == evaluation.STATUS_OK
        cells = [entry["label"], f"{100 * entry['fitness']:+.2f}" if ok else entry.get("status", "failed")]
        if entry is selection[-1]:
            cells += ["(start)"] + (["(start)"] if repeats else []) + ["0.0"] * len(noises)
        else:
            if ok:
                trained.append(accuracies)
            cells.append(f"{tasks_won(accuracies, start)}/{len(start)}")
            if repeats:
                cells.append(f"{len(tasks_below_spread(accuracies, start))}/{tasks}")
            for noise in noises:
                keys = [key for key in start if _noise_of(key) == noise]
                cells.append(f"{100 * np.mean([accuracies[k] - start[k] for k in keys]):+.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    summary = gain_noise_summary(start, trained, resolution)
    if summary:
        lines.append("\n" + summary)
    lines.append(f"\nSelected: {record['provenance'].get('selected', '(not recorded)')}.")
    if dropped:
        lines.append(f"Left out: the {len(dropped)} instances matching `{drop}` (wins, tasks below spread and "
                     f"gains are over the other {len(start)}).")
    return "\n".join(lines)


def _creator():
    from deap import base, creator

    if not hasattr(creator, "TfrobustFitness"):
        creator.create("TfrobustFitness", base.Fitness, weights=(1.0,))
        creator.create("TfrobustIndividual", list, fitness=creator.TfrobustFitness)
    return creator


class _Progress:
    """The progress line: generation k of the run's total, counting from where this session started."""

    def __init__(self, first_generation, total, printer):
        self.first_generation = first_generation
        self.total = total
        self.printer = printer
        self.start = time.perf_counter()

    def report(self, entry, evaluations, modes):
        done = entry["generation"] + 1 - self.first_generation
        elapsed = time.perf_counter() - self.start
        remaining = (self.total - entry["generation"] - 1) * elapsed / done
        self.printer(
            f"gen {entry['generation'] + 1}/{self.total}  best {entry['best']:.4f}  mean {entry['mean']:.4f}  "
            f"sigma {entry['sigma']:.4f}  failed {entry['failed']}  nonfinite {entry['nonfinite']}  "
            f"{evaluations / max(entry['seconds'], 1e-9):.2f} evals/s  ETA {remaining:.0f}s  [{modes}]"
        )


def _read_evaluations(path, before_generation):
    """Valid records of generations < `before_generation` (drops a torn last line)."""
    return [r for r in _io.read_jsonl(path) if r.get("generation", 1 << 30) < before_generation]


class _FailureWatch:
    """Prints the first failure's traceback once and stops a run whose evaluations fail."""

    def __init__(self, max_failure_fraction, printer):
        self.max_failure_fraction = max_failure_fraction
        self.printer = printer
        self.shown = False

    def check(self, results, history, what):
        failed = [r for r in results if r.status == evaluation.STATUS_FAILED]
        if failed and not self.shown:
            self.printer(f"First failed evaluation ({what}): {failed[0].error}\n{failed[0].traceback.rstrip()}")
            self.shown = True
        if failed and len(failed) == len(results):
            raise SearchFailedError(
                f"Every evaluation of {what} failed; the first error: {failed[0].error.rstrip('.')}. Fix the cause "
                "(the traceback is printed above) and continue with --resume: the last checkpoint is intact."
            )
        # .get: runs checkpointed before failures were counted stay resumable.
        total = sum(e.get("evaluations", 0) for e in history) + len(results)
        failures = sum(e.get("failed", 0) for e in history) + len(failed)
        if failures > self.max_failure_fraction * total:
            raise SearchFailedError(
                f"{failures} of the run's {total} evaluations failed, more than --max_failure_fraction="
                f"{self.max_failure_fraction}; the first error of {what}: {failed[0].error.rstrip('.') if failed else '-'}. "
                "Fix the cause and continue with --resume: the last checkpoint is intact."
            )


def run_search(config, printer=print):
    """Runs (or resumes) a search; returns a `SearchResult`.

    Raises:
        ValueError: a bad setting or suite, before any work is done.
        FileExistsError, FileNotFoundError, checkpoint.CheckpointError: the
            output folder does not fit `config.resume` (see `checkpoint.open_run`).
        SearchFailedError: evaluations fail (see the module docstring).
    """
    from deap import cma

    config.validate()
    suite = tasks_lib.load_suite(config.task_suite, config.fitness_split)
    if config.tasks_per_generation:
        suite = dataclasses.replace(suite, tasks_per_generation=config.tasks_per_generation)
    if config.stratify_tasks_by:
        suite = dataclasses.replace(suite, stratify_by=config.stratify_tasks_by)
    tasks_lib.check_datasets(suite)
    selection_suite = suite
    if config.selection_suite:
        selection_suite = tasks_lib.load_suite(config.selection_suite, config.fitness_split)
        tasks_lib.check_datasets(selection_suite)
    state = checkpoint.open_run(config.output_dir, config.search_key(), config.resume, printer)
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
    elif state["generation"] < config.generations:
        printer(f"Resuming {config.output_dir} at generation {state['generation'] + 1} of {config.generations}.")
    else:
        printer(f"{config.output_dir} already ran {state['generation']} generations (--generations="
                f"{config.generations}): repeating only the final selection.")
    # Drop the evaluations of a generation that was interrupted (all of them when starting over).
    kept = _read_evaluations(evaluations_path, state["generation"])
    _io.write_text(evaluations_path, "".join(json.dumps(r) + "\n" for r in kept))

    writer = _summary_writer(config.output_dir)
    executor = evaluation.make_executor(
        config.executor, num_workers=config.num_workers, ray_address=config.ray_address or None
    )
    progress = _Progress(state["generation"], config.generations, printer)
    watch = _FailureWatch(config.max_failure_fraction, printer)
    printer(
        f"Search: population {config.population_size}, {config.generations} generations, suite "
        f"{suite.name!r} ({len(suite.tasks)} tasks, {suite.tasks_per_generation} per generation"
        f"{', stratified by ' + suite.stratify_by if suite.stratify_by else ''}), "
        f"evaluator {config.evaluator}, executor {config.executor}, outputs in {config.output_dir}"
    )
    try:
        while state["generation"] < config.generations:
            _run_generation(config, suite, state, creator, executor, watch, evaluations_path)
            entry = state["history"][-1]
            _log_scalars(writer, entry)
            progress.report(entry, config.population_size, ",".join(entry["evaluators"]))
            _plot_fitness(state["history"], os.path.join(config.output_dir, "fitness.png"))
        record, selection = _finalise(config, suite, selection_suite, state, executor, watch, printer)
    finally:
        executor.close()
        if writer is not None:
            writer.close()
    return SearchResult(record, _io.read_jsonl(evaluations_path), selection)


def _run_generation(config, suite, state, creator, executor, watch, evaluations_path):
    """Evaluates one generation, updates the strategy and checkpoints (unless the evaluations fail)."""
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
        aggregation=config.fitness_aggregation, pooling=config.population_pooling,
        start=initial_centroid(config.init, config.order),
    )
    # Recorded before the failure check, so a stopped run's log shows what failed;
    # a resume drops them with the rest of the unfinished generation.
    _io.append_jsonl(evaluations_path, [
        {
            "generation": generation, "member": member, "coefficients": result.coefficients,
            "accuracies": result.accuracies, "fitness": result.fitness, "seconds": result.seconds,
            "status": result.status, **({"error": result.error} if result.error else {}),
        }
        for member, result in enumerate(results)
    ])
    watch.check(results, state["history"], f"generation {generation + 1}")
    fitnesses = np.array([r.fitness for r in results])
    if not np.isfinite(fitnesses).all():  # evaluate_generation promises 0 for these; a NaN would corrupt CMA-ES
        raise RuntimeError(f"Non-finite fitness reached the CMA-ES update: {fitnesses.tolist()}.")
    for individual, result in zip(individuals, results):
        individual.fitness.values = (result.fitness,)
    strategy.update(individuals)
    best_index = int(np.argmax(fitnesses))
    counts = {status: sum(r.status == status for r in results)
              for status in (evaluation.STATUS_FAILED, evaluation.STATUS_NONFINITE)}
    entry = {
        "generation": generation,
        "best": float(fitnesses[best_index]),
        "mean": float(fitnesses.mean()),
        "sigma": float(strategy.sigma),
        "seconds": time.perf_counter() - started,
        "evaluations": len(results),
        "failed": counts[evaluation.STATUS_FAILED],
        "nonfinite": counts[evaluation.STATUS_NONFINITE],
        "best_coefficients": results[best_index].coefficients,
        "centroid": np.asarray(strategy.centroid).tolist(),
        "tasks": [i.key for i in instances],
        "evaluators": sorted(set(modes.values())),
        **({"reference_accuracies": results[0].reference_accuracies} if results[0].reference_accuracies else {}),
        **({"start_accuracies": results[0].start_accuracies} if results[0].start_accuracies else {}),
    }
    state["history"].append(entry)
    if state["best"] is None or entry["best"] > state["best"]["fitness"]:
        state["best"] = {"fitness": entry["best"], "coefficients": entry["best_coefficients"], "generation": generation}
    state["generation"] = generation + 1
    state["elapsed"] += entry["seconds"]
    checkpoint.save_checkpoint(config.output_dir, state)


def _finalise(config, suite, selection_suite, state, executor, watch, printer):
    """Re-scores the best candidates and the final centroid on fixed tasks; writes outputs.

    Fitness during the search is measured on tasks drawn anew each generation,
    so the best single score is partly luck of the draw. The final selection
    scores a few strong candidates on the same fixed task instances of
    `selection_suite` (the search's own `suite`, or one whose tasks it never
    scored) and keeps the best: the one written to best_coefficients.json.
    """
    best_path = os.path.join(config.output_dir, BEST)
    candidates = [np.asarray(state["history"][-1]["centroid"])]
    ranked = sorted(state["history"], key=lambda e: -e["best"])
    for entry in ranked[: max(config.selection_candidates - 1, 1)]:
        candidates.append(np.asarray(entry["best_coefficients"]))
    labels = ["centroid"] + [f"cand{i}" for i in range(1, len(candidates))]
    start = initial_centroid(config.init, config.order)
    if config.selection_include_start:
        candidates.append(start)
        labels.append("start")
    instances = selection_suite.fixed_instances(config.seed, config.selection_repeats)
    inline = isinstance(executor, evaluation.InlineExecutor)
    printer(f"Scoring the finalists ({', '.join(labels)}) on all {len(instances)} task instances of suite "
            f"{selection_suite.name!r}" + ("" if inline else f" ({executor.name} executor; no progress until it ends)"))
    if inline:  # one job at a time: a progress line per job
        executor = executor.with_progress(printer)
    results, _ = evaluation.evaluate_generation(
        np.array(candidates), instances, executor, evaluator=config.evaluator,
        fitness_split=suite.fitness_split, strategy=config.distribution_strategy,
        aggregation=config.fitness_aggregation, pooling=config.population_pooling, start=start,
    )
    watch.check(results, state["history"], "the final selection")
    winner = select_winner(results, config.selection_include_start, config.selection_rule)
    # Per entry: on how many task instances a finalist beats the start (None: the start itself, or no start).
    won = ([tasks_won(r.accuracies, results[-1].accuracies) for r in results[:-1]] + [None]
           if config.selection_include_start else [None] * len(results))
    # Per entry, with the start and repeats: the tasks on which a finalist falls outside the start's spread.
    below = ([tasks_below_spread(r.accuracies, results[-1].accuracies) for r in results[:-1]] + [None]
             if config.selection_include_start and config.selection_repeats > 1 else [None] * len(results))
    printer(
        f"Final selection on all {len(instances)} tasks of suite {selection_suite.name!r}: "
        + ", ".join(f"{label} {r.fitness:.4f}" + ("" if w is None else f" (beats the start on {w}/{len(instances)}"
                                                  + ("" if b is None else f", below its spread on {len(b)} tasks")
                                                  + ")")
                    for label, r, w, b in zip(labels, results, won, below))
    )
    history = state["history"]
    provenance = {
        "method": "CMA-ES search (tfrobust.search.evolve)",
        "command": config.command or "(library call)",
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        **_provenance.git_revision(),
        "seed": config.seed,
        "budget": {
            "population_size": config.population_size,
            "generations": config.generations,
            "evaluations": config.population_size * config.generations,
            "task_suite": suite.to_dict(),
            **({"selection_suite": selection_suite.to_dict()} if selection_suite is not suite else {}),
        },
        "fitness": results[winner].fitness,
        "fitness_aggregation": config.fitness_aggregation,
        **({"selection_rule": config.selection_rule} if config.selection_rule != "fitness" else {}),
        "fitness_definition": f"{fitness_lib.parse_aggregation(config.fitness_aggregation).describe()} (accuracy "
                              f"on the {suite.fitness_split} validation split; all {len(instances)} task instances of "
                              f"suite {selection_suite.name!r}, final selection)",
        "search_best_fitness": state["best"]["fitness"],
        "failed_evaluations": sum(e.get("failed", 0) for e in history),
        "nonfinite_evaluations": sum(e.get("nonfinite", 0) for e in history),
        "wall_time_s": round(state["elapsed"], 1),
        "machine": _provenance.describe_machine(),
        "selected": {"centroid": "centroid", "start": f"the starting point (--init={config.init})"}.get(
            labels[winner], f"best of a generation (rank {winner})"),
    }
    record = taylor.preset_record(
        f"evolved_seed{config.seed}", f"TaylorLoss evolved by search.evolve on suite {suite.name!r}",
        results[winner].coefficients, config.order, provenance,
    )
    selection = [{"label": label, "coefficients": r.coefficients, "fitness": r.fitness, "accuracies": r.accuracies,
                  "status": r.status, **({"error": r.error} if r.error else {}),
                  **({} if w is None else {"tasks_won_against_start": w}),
                  **({} if b is None else {"tasks_below_start_spread": {
                      task: {"shortfall": shortfall, "spread": spread} for task, (shortfall, spread) in b.items()}})}
                 for label, r, w, b in zip(labels, results, won, below)]
    record["selection"] = selection
    _io.write_json(best_path, record)
    write_finalists(record, config.output_dir)
    _plot_loss(record, os.path.join(config.output_dir, "loss_curve.png"))
    printer(f"Best coefficients: {best_path}  (fitness {results[winner].fitness:.4f})")
    printer(f"Outputs: {config.output_dir}/{{{BEST}, {FINALISTS}/*.json, {EVALUATIONS}, {CHECKPOINT}, fitness.png, "
            "loss_curve.png}")
    return record, selection


FINALISTS = "finalists"


def write_finalists(record, directory):
    """Writes each finalist of a search's final selection as `directory/finalists/<label>.json`.

    `record` is a search's best_coefficients.json record (with its "selection"). Each file is a
    coefficient file (`TaylorLoss.from_file`, `search.benchmark --methods=taylor_file:...`) with the
    search's provenance, its own final-selection fitness and, when the start was re-scored, on how many
    selection tasks it beats the start, so finalists can be judged on another grid (e.g. `search.benchmark
    --preset=validation`) without touching the held-out one. Returns the paths, in selection order.

    Raises:
        ValueError: the record has no final selection (a file written before selections were recorded).
    """
    entries = record.get("selection")
    if not entries:
        raise ValueError(f"Record {record.get('name')!r} has no 'selection': only a search's best_coefficients.json "
                         "written by search.evolve lists its finalists.")
    folder = os.path.join(directory, FINALISTS)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for index, entry in enumerate(entries):
        # Files written before finalists carried labels list them in the same order: the centroid, then cand1...
        entry = {"label": "centroid" if index == 0 else f"cand{index}", **entry}
        provenance = {**record["provenance"], "fitness": entry["fitness"], "selected": f"finalist {entry['label']!r}",
                      **({"tasks_won_against_start": entry["tasks_won_against_start"]}
                         if "tasks_won_against_start" in entry else {})}
        finalist = taylor.preset_record(
            f"{record['name']}_{entry['label']}", f"{record['description']} (final-selection finalist "
            f"{entry['label']!r}, status {entry['status']})", entry["coefficients"], record["order"], provenance)
        paths.append(os.path.join(folder, f"{entry['label']}.json"))
        _io.write_json(paths[-1], finalist)
    return paths


def export_finalists(best_path):
    """`write_finalists` for a search already run: reads its best_coefficients.json, writes next to it."""
    with open(best_path) as handle:
        record = json.load(handle)
    return write_finalists(record, os.path.dirname(best_path) or ".")


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
    axis.set_ylabel("fitness (--fitness_aggregation of validation accuracies)")
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


def command_line():
    """The command that started this process, for provenance."""
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), "-m", "search.evolve"] + sys.argv[1:])
