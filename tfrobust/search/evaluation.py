"""Fitness evaluation of a CMA-ES generation: evaluators and executors.

An *evaluator* turns a generation (a `(population, n_coefficients)` matrix
and its task instances) into jobs; an *executor* runs the jobs (inline, in
worker processes, or on a Ray cluster). Two evaluators:

  vectorized     one job per task: the whole generation trains at once as a
                 population model (`tfrobust.search.population`). The default.
  per_candidate  one job per (task, candidate): one `model.fit` each. The
                 reference path, and the fallback for architectures that
                 have no population version.

A job returns per-member accuracies and finiteness flags. A job that raises,
or whose worker dies twice, comes back as a `JobFailure` carrying the error
and its traceback text; its candidates get status "failed" and fitness 0, and
the search decides whether that many failures stop it (`tfrobust.search.evolve`).
A candidate whose training diverged (non-finite weights or fitness) gets status
"nonfinite" and fitness 0: a legitimate, bad result, not a failure.

Fitness aggregates a candidate's accuracies over the task instances as
`tfrobust.search.fitness` says (the mean by default). An aggregation
relative to cross-entropy adds one reference job per task instance; if it
fails, every candidate fails on that instance (there is nothing to compare with).
"""

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import os
import time
import traceback

import numpy as np

STATUS_OK = "ok"
STATUS_NONFINITE = "nonfinite"
STATUS_FAILED = "failed"

EVALUATORS = ("auto", "vectorized", "per_candidate")
EXECUTORS = ("inline", "processes", "ray")


@dataclasses.dataclass(frozen=True)
class Job:
    """Train `coefficients` rows on one task instance; `members` are their row indices."""

    instance: object
    coefficients: np.ndarray
    members: tuple
    vectorized: bool
    fitness_split: str = "clean"
    strategy: str = "off"
    reference: bool = False  # train cross-entropy (the fitness reference) instead of `coefficients`
    pooling: str = "fused"  # the population model's max pooling (`population.POOLINGS`)


@dataclasses.dataclass(frozen=True)
class JobFailure:
    """What an executor returns for a job that raised or whose worker died.

    `traceback` is the formatted text, kept as a string because exceptions
    and tracebacks do not always survive pickling back from a worker.
    """

    error: str  # "TypeName: message"
    traceback: str

    @classmethod
    def from_exception(cls, exception):
        text = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
        return cls(f"{type(exception).__name__}: {exception}", text)


def guarded(function, job):
    """Runs `function(job)`; an exception becomes a `JobFailure` (a candidate must not stop the search)."""
    try:
        return function(job)
    except Exception as exception:
        return JobFailure.from_exception(exception)


@dataclasses.dataclass
class CandidateResult:
    coefficients: list
    accuracies: dict  # task instance key -> accuracy
    fitness: float
    status: str
    seconds: float
    error: str = ""  # the first failed job's error, for status "failed"
    traceback: str = ""
    reference_accuracies: dict = dataclasses.field(default_factory=dict)  # cross-entropy's, when the fitness uses it
    start_accuracies: dict = dataclasses.field(default_factory=dict)  # the starting loss's, under start_gain


def run_job(job):
    """Executes one job in the current process: returns `(accuracies, finite, seconds)`."""
    from tfrobust.search import training

    start = time.perf_counter()
    data = training.prepare_task(job.instance, job.fitness_split)
    if job.reference:
        from tfrobust.search import fitness

        accuracy, finite = fitness.train_reference(data, strategy=job.strategy)
        accuracies, finite = np.array([accuracy]), np.array([finite])
    elif job.vectorized:
        accuracies, finite = training.train_population(data, job.coefficients, strategy=job.strategy,
                                                       pooling=job.pooling)
    else:
        results = [training.train_single(data, row, strategy=job.strategy) for row in job.coefficients]
        accuracies = np.array([r[0] for r in results])
        finite = np.array([r[1] for r in results])
    return np.asarray(accuracies, dtype=float), np.asarray(finite, dtype=bool), time.perf_counter() - start


class InlineExecutor:
    """Runs jobs one after another in this process.

    With `progress` (a printer such as `print`), each finished job prints a line: jobs done of the call's,
    what ran on which task instance, elapsed seconds and an ETA.
    """

    name = "inline"

    def __init__(self, function=run_job, progress=None):
        self.function = function
        self.progress = progress

    def with_progress(self, printer):
        """This executor, printing a progress line per job to `printer`."""
        return InlineExecutor(self.function, progress=printer)

    def map(self, jobs):
        start, outputs = time.time(), []
        for done, job in enumerate(jobs, 1):
            outputs.append(guarded(self.function, job))
            if self.progress is not None:
                elapsed = time.time() - start
                self.progress(f"[{done}/{len(jobs)}] {'cross-entropy' if job.reference else 'losses'} on "
                              f"{job.instance.key}: {elapsed:.0f}s, ETA {elapsed / done * (len(jobs) - done):.0f}s")
        return outputs

    def close(self):
        pass


def _worker_initializer():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class ProcessExecutor:
    """Runs jobs in spawned worker processes (TensorFlow and fork do not mix).

    A worker that dies breaks the pool: the pool is replaced and the jobs
    that had not finished are retried once, each on its own; a job whose
    worker dies again is reported as failed.
    """

    name = "processes"

    def __init__(self, num_workers=2, function=run_job):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"--num_workers must be a positive integer for --executor=processes; got {num_workers!r}.")
        self.num_workers = num_workers
        # The guard runs in the worker, where the traceback still exists.
        self.function = functools.partial(guarded, function)
        self._pool = None

    def _new_pool(self):
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.num_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_initializer,
        )

    def map(self, jobs):
        results = [None] * len(jobs)
        retry = self._run_batch(jobs, range(len(jobs)), results)
        # A broken pool fails every job in flight, not only the one whose
        # worker died: retry those one at a time, so that a second death is
        # pinned on the job that caused it.
        for index in retry:
            if self._run_batch(jobs, [index], results):
                results[index] = JobFailure(
                    "WorkerDied: the worker process died twice (killed, out of memory or crashed) while "
                    "running this job", "no Python traceback: the process ended without raising",
                )
        return results

    def _run_batch(self, jobs, indices, results):
        """Runs `indices` in the pool; returns those lost to a dead worker."""
        if self._pool is None:
            self._pool = self._new_pool()
        futures = {self._pool.submit(self.function, jobs[i]): i for i in indices}
        lost = []
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            try:
                results[index] = future.result()
            except concurrent.futures.process.BrokenProcessPool:
                lost.append(index)
            except Exception as error:  # e.g. a job that cannot be pickled
                results[index] = JobFailure.from_exception(error)
        if lost:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return sorted(lost)

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class RayExecutor:
    """Runs jobs as Ray tasks: a local Ray instance, or the cluster at `address`.

    Ray re-runs a task whose worker died (`max_retries=1`); a task that still
    fails is reported as failed. `close()` shuts down the local instance this
    executor started, never one it found running or a cluster it joined.
    """

    name = "ray"

    def __init__(self, address=None, num_cpus=None, function=run_job):
        try:
            import ray
        except ImportError:
            raise ImportError(
                "--executor=ray needs Ray: pip install 'tfrobust[ray]' (or pip install ray)."
            ) from None
        self._ray = ray
        self.function = function
        # The guard runs in the worker, where the traceback still exists.
        self._remote = ray.remote(max_retries=1, num_cpus=1)(guarded)
        self.started_ray = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
                self.started_ray = True

    def map(self, jobs):
        references = [self._remote.remote(self.function, job) for job in jobs]
        results = []
        for reference in references:
            try:
                results.append(self._ray.get(reference))
            except Exception as error:  # the worker died twice, or Ray itself failed
                results.append(JobFailure.from_exception(error))
        return results

    def close(self):
        if self.started_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self.started_ray = False


def make_executor(name, *, num_workers=2, ray_address=None, function=run_job):
    """The executor called `name` (one of `EXECUTORS`)."""
    if name == "inline":
        return InlineExecutor(function)
    if name == "processes":
        return ProcessExecutor(num_workers, function)
    if name == "ray":
        return RayExecutor(ray_address, function=function)
    raise ValueError(f"Unknown executor {name!r}; choose one of {list(EXECUTORS)}.")


def supports_vectorized(architecture):
    """Whether `tfrobust.search.population` has a population version of every layer of `architecture`."""
    from tfrobust.search import population

    return population.supports(architecture)


def evaluate_generation(coefficients, instances, executor, *, evaluator="auto", fitness_split="clean", strategy="off",
                        aggregation="mean", pooling="fused", start=None):
    """Scores every row of `coefficients` on every task instance.

    `aggregation` is a `tfrobust.search.fitness` spec ("mean", "quantile:0.25",
    "ce_gain/quantile:0.25", ...) or a parsed `fitness.Aggregation`.
    `pooling` is the population models' max pooling (`population.POOLINGS`).
    `start` (a coefficient vector) is the reference loss of a `start_gain`
    fitness: trained as one more population member on the same instances.
    If it fails, every candidate fails with that error (no fitness exists).

    Returns `(results, modes)`: one `CandidateResult` per row, and for each
    task the evaluator that ran it ("vectorized" or "per_candidate").
    """
    from tfrobust.search import fitness as fitness_lib

    aggregation = fitness_lib.parse_aggregation(aggregation)
    coefficients = np.asarray(coefficients, dtype="float64")
    candidates = len(coefficients)
    if aggregation.needs_start:
        if start is None:
            raise ValueError(f"Fitness aggregation {aggregation.reference!r} scores candidates against the starting "
                             "loss: pass its coefficients as `start` (search.evolve passes --init's).")
        start = np.asarray(start, dtype="float64").reshape(1, -1)
        if start.shape[1] != coefficients.shape[1]:
            raise ValueError(f"The start has {start.shape[1]} coefficients and the candidates {coefficients.shape[1]}: "
                             "pad it to the candidates' order (evolve.initial_centroid).")
        coefficients = np.concatenate([coefficients, start])  # the last member
    population_size = len(coefficients)
    jobs, modes = [], {}
    for instance in instances:
        vectorized = evaluator == "vectorized" or (
            evaluator == "auto" and supports_vectorized(instance.task.architecture)
        )
        if evaluator == "vectorized" and not supports_vectorized(instance.task.architecture):
            raise ValueError(f"Architecture {instance.task.architecture!r} has no population version.")
        modes[instance.key] = "vectorized" if vectorized else "per_candidate"
        if vectorized:
            jobs.append(Job(instance, coefficients, tuple(range(population_size)), True, fitness_split, strategy,
                            pooling=pooling))
        else:
            for member in range(population_size):
                jobs.append(Job(instance, coefficients[member : member + 1], (member,), False, fitness_split, strategy))
        if aggregation.needs_reference:
            jobs.append(Job(instance, coefficients[:0], (), False, fitness_split, strategy, reference=True))
    outputs = executor.map(jobs)

    accuracies = np.full((population_size, len(instances)), np.nan)
    status = np.full(population_size, STATUS_OK, dtype=object)
    seconds = np.zeros(population_size)
    errors = [""] * population_size
    tracebacks = [""] * population_size
    column = {instance.key: k for k, instance in enumerate(instances)}
    reference = np.full(len(instances), np.nan)
    for job, output in zip(jobs, outputs):
        members = list(range(population_size)) if job.reference else list(job.members)
        if isinstance(output, JobFailure):
            accuracies[members, column[job.instance.key]] = 0.0
            status[members] = STATUS_FAILED
            for member in members:
                if not errors[member]:
                    errors[member] = f"{job.instance.key}: {output.error}"[:500]
                    tracebacks[member] = output.traceback
            continue
        job_accuracies, finite, job_seconds = output
        if job.reference:
            reference[column[job.instance.key]] = job_accuracies[0]
            seconds += job_seconds / population_size
            continue
        accuracies[members, column[job.instance.key]] = job_accuracies
        for member, ok in zip(members, finite):
            if not ok and status[member] == STATUS_OK:
                status[member] = STATUS_NONFINITE
        seconds[members] += job_seconds / len(members)
    references = {inst.key: float(reference[k]) for k, inst in enumerate(instances)} if aggregation.needs_reference else {}
    starts = {}
    if aggregation.needs_start:
        reference = accuracies[-1]
        starts = {inst.key: float(reference[k]) for k, inst in enumerate(instances)}
        if status[-1] != STATUS_OK:
            problem = errors[-1] or "a non-finite loss or accuracy"
            for member in range(candidates):
                status[member] = STATUS_FAILED
                errors[member] = errors[member] or f"the starting loss (the start_gain reference) {status[-1]}: {problem}"
                tracebacks[member] = tracebacks[member] or tracebacks[-1]
    results = []
    for member in range(candidates):
        fitness = 0.0 if status[member] != STATUS_OK else float(aggregation(accuracies[member], reference))
        if not np.isfinite(fitness):
            # A NaN accuracy (e.g. an empty scoring split) must never reach the CMA-ES update.
            status[member], fitness = STATUS_NONFINITE, 0.0
        results.append(
            CandidateResult(
                coefficients=coefficients[member].tolist(),
                accuracies={inst.key: float(accuracies[member, k]) for k, inst in enumerate(instances)},
                fitness=fitness,
                status=str(status[member]),
                seconds=float(seconds[member]),
                error=errors[member],
                traceback=tracebacks[member],
                reference_accuracies=references,
                start_accuracies=starts,
            )
        )
    return results, modes
