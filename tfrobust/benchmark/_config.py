"""Benchmark settings: the named presets, the grid's config, and one run's spec."""

import dataclasses
import hashlib
import itertools

from tfrobust import imbalance as imbalance_lib
from tfrobust import models
from tfrobust import noise as noise_lib
from tfrobust.benchmark import _methods
from tfrobust.optimizers import make_optimizer

ALL_NOISE = (
    "none", "symmetric:0.2", "symmetric:0.4", "symmetric:0.6", "symmetric:0.8",
    "pairflip:0.2", "pairflip:0.4", "instance:0.4",
)

# Presets are values of `BenchmarkConfig` fields; explicit arguments override them.
# "methods": None stands for `default_methods()`. Each preset's "about" is its
# one-line description (the --preset help is built from it); its size and run
# time are derived (`describe_preset`), never written here.
# The grid of the README table, shared by "full" and "reweighting" so that
# their rows compare run for run.
_FULL_GRID = {
    "datasets": ("digits", "mnist5k"),
    "architectures": ("mlp",),
    "noise": ("none", "symmetric:0.4", "symmetric:0.8", "pairflip:0.4", "instance:0.4"),
    "seeds": (0, 1, 2),
    "epochs": 20,
}

# The peers of issue 10's held-out protocol, then the shipped TaylorLoss presets.
HELDOUT_METHODS = ("ce", "gce", "sce", "nce_rce", "mae", "taylor_ce", "poly1", "bootstrap_soft",
                   "taylor:evolved_bundled", "taylor:evolved_bundled_long")

PRESETS = {
    "default": {
        "about": "every method on the smallest grid, a first look (--dry_run estimates its time)",
        "output_dir": "runs/benchmark",
        "methods": None,
        "datasets": ("digits",),
        "architectures": ("mlp",),
        "noise": ("none", "symmetric:0.4", "pairflip:0.4"),
        "seeds": (0, 1, 2),
        "epochs": 20,
    },
    "full": {
        "about": "the grid of the README table; add --architectures=mlp,cnn and every setting of ALL_NOISE "
                 "for the whole grid",
        "output_dir": "runs/benchmark_full",
        "susceptibility": True,
        "methods": None,
        **_FULL_GRID,
    },
    # Issue 10's held-out protocol: data set families, architectures and noise that no task of the
    # broad search (tfrobust.search.tasks.SUITES["broad"], HELDOUT) used: MNIST-5k and procedural
    # strokes, mlp2 and resnet_tiny, swap noise (a kind it never saw) and symmetric noise above its
    # highest rate (0.6); full-length training, 3 seeds. resnet_tiny runs on the 16x16 strokes only
    # (on 28x28 MNIST-5k one run costs about 100 s on a 2-core CPU, 6x the rest of its column).
    "heldout": {
        "about": "issue 10's held-out protocol: the TaylorLoss presets against every peer loss on data set "
                 "families (MNIST-5k, procedural strokes), architectures (mlp2, resnet_tiny) and noise (swap, "
                 "symmetric 80%) that no search task used",
        "output_dir": "runs/benchmark_heldout",
        "susceptibility": True,
        "methods": HELDOUT_METHODS,
        "datasets": ("mnist5k", "procedural:strokes"),
        "architectures": ("mlp2", "resnet_tiny"),
        "skip": ("mnist5k/resnet_tiny",),
        "noise": ("symmetric:0.8", "swap:0.3"),
        "seeds": (0, 1, 2),
        "epochs": 40,
    },
    # The held-out protocol's shape (two data set families, two architectures, symmetric noise at 80% and a
    # class-pair noise at 30%, 40 epochs, 3 seeds) on what the search may use: `digits` and a new data set of
    # the procedural `templates` family the broad suites draw from (prototype seed 7; they use 0-2, their
    # selection 5-6), `mlp` and `cnn_bn`, pair-flip noise instead of the held-out swap noise. A search's
    # finalists can be judged on it (`search.heldout_verdict --preset=validation`) without touching the
    # held-out grid. At difficulty 0.2, 80% symmetric noise is learnable (on mlp, CE 56.6% and evolved_bundled
    # 82.9%, 3 seeds: README "A validation grid"); the broad suites' selection sets at 0.4-0.5 sit near chance.
    "validation": {
        "about": "the held-out protocol's shape on data set families and architectures the search uses (digits "
                 "and procedural templates, mlp and cnn_bn; symmetric 80% and pair-flip 30%), for choosing among "
                 "searched losses without touching the held-out grid",
        "output_dir": "runs/benchmark_validation",
        "methods": HELDOUT_METHODS,
        "datasets": ("digits", "procedural:templates:classes=10,difficulty=0.2,seed=7"),
        "architectures": ("mlp", "cnn_bn"),
        "noise": ("symmetric:0.8", "pairflip:0.3"),
        "seeds": (0, 1, 2),
        "epochs": 40,
    },
    # Issue 11 / 12 methods (tfrobust.benchmark._reweighting_methods) beside
    # CE, GCE and the evolved TaylorLoss, on the same runs and on the grid of
    # the "full" preset (same data, model, noise, seeds and epochs), so its
    # rows compare with the README table. l2rw, mwn, warpi and advisor are
    # given 10 clean examples per class (results.csv: clean_examples).
    "reweighting": {
        "about": "the re-weighting and sample-selection methods (L2RW, Meta-Weight-Net, WarPI, the advisor "
                 "network and FORML with a clean meta set of 10 per class, ABSGD for noise, BARE, MentorNet-PD, "
                 "AdaCore) against CE, GCE and the evolved TaylorLoss",
        "output_dir": "runs/benchmark_reweighting",
        "susceptibility": True,
        "methods": ("ce", "gce", "taylor", "l2rw", "mwn", "warpi", "advisor", "forml", "absgd", "bare", "mentornet_pd",
                    "adacore"),
        **_FULL_GRID,
    },
    # MNIST-5k only: on digits (about 130 training examples a class) the rarest
    # class of longtail:100 keeps a single example.
    "imbalance": {
        "about": "class imbalance (long-tailed MNIST-5k at ratios 10 and 100, with and without 20% symmetric "
                 "noise): LDAM-DRW, ABSGD for imbalance (lambda > 0), BARE, MentorNet-PD, AdaCore, L2RW and "
                 "Meta-Weight-Net (balanced clean meta set of 10 per class) against CE, GCE and the evolved "
                 "TaylorLoss; reports balanced and rarest-classes accuracy",
        "output_dir": "runs/benchmark_imbalance",
        "methods": ("ce", "gce", "taylor", "ldam_drw", "absgd_imbalance", "bare", "mentornet_pd", "adacore", "l2rw",
                    "mwn"),
        "datasets": ("mnist5k",),
        "architectures": ("mlp",),
        "noise": ("none", "symmetric:0.2"),
        "imbalance": ("longtail:10", "longtail:100"),
        "seeds": (0, 1, 2),
        "epochs": 20,
    },
}


def _run_id(key_values):
    """The run id: a short hash of the key columns' strings (a dict in `RunSpec` field order).

    A balanced run ("imbalance" "none") hashes without its imbalance column, so
    its id is the one it had before the imbalance axis existed.
    """
    values = [value for name, value in key_values.items() if not (name == "imbalance" and value == "none")]
    return hashlib.sha1("|".join(values).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the grid: everything that decides its result (and its row's key)."""

    dataset: str
    architecture: str
    noise: str
    method: str
    seed: int
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    max_examples: int | None
    # Last and defaulted: RunSpecs built positionally before the imbalance axis still work.
    imbalance: str = "none"

    def fields(self):
        """The key columns of results.csv, as the strings written there, "run_id" first."""
        values = {
            "dataset": self.dataset,
            "architecture": self.architecture,
            "noise": self.noise,
            "method": self.method,
            "seed": str(self.seed),
            "epochs": str(self.epochs),
            "batch_size": str(self.batch_size),
            "optimizer": self.optimizer,
            "learning_rate": repr(float(self.learning_rate)),
            "max_examples": "" if self.max_examples is None else str(self.max_examples),
            "imbalance": self.imbalance,
        }
        return {"run_id": _run_id(values), **values}

    @property
    def run_id(self):
        return self.fields()["run_id"]

    def describe(self):
        imbalance = "" if self.imbalance == "none" else f" {self.imbalance}"
        return f"{self.dataset}/{self.architecture}{imbalance} {self.noise} {self.method} seed {self.seed}"


KEY_FIELDS = ("run_id",) + tuple(field.name for field in dataclasses.fields(RunSpec))


def run_id_matches(row):
    """Whether `row` (strings keyed by column) carries the run id its key columns hash to.

    A row torn inside its key (or edited by hand) fails this, so it is never
    mistaken for the run it half names.
    """
    values = {name: row.get(name) for name in KEY_FIELDS[1:]}
    return all(isinstance(value, str) for value in values.values()) and row.get("run_id") == _run_id(values)


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Every setting of a benchmark (the flags of `search.benchmark`).

    The defaults are the "default" preset; `from_preset` gives the others.
    Axis values are tuples of names; `methods=None` means `default_methods()`.
    """

    output_dir: str = PRESETS["default"]["output_dir"]
    methods: tuple | None = PRESETS["default"]["methods"]
    datasets: tuple = PRESETS["default"]["datasets"]
    architectures: tuple = PRESETS["default"]["architectures"]
    noise: tuple = PRESETS["default"]["noise"]
    imbalance: tuple = ("none",)  # class-imbalance profiles of the training split (tfrobust.imbalance)
    seeds: tuple = PRESETS["default"]["seeds"]
    epochs: int = PRESETS["default"]["epochs"]
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    max_examples: int | None = None
    # "DATASET/ARCHITECTURE" cells of the grid to leave out (e.g. an architecture too costly on one data set).
    skip: tuple = ()
    save_models: bool = False
    # Record susceptibility zeta per epoch in curves.jsonl (`tfrobust.metrics.Susceptibility`);
    # it leaves training bit-identical, so it is not part of a run's key.
    susceptibility: bool = False
    # "OPTIMIZER:LEARNING_RATE" (e.g. "sgd:0.05"): measure zeta with a step of that optimiser from a
    # fresh state (`Susceptibility(probe_optimizer=...)`) instead of the run's own optimiser; empty: its own.
    susceptibility_probe: str = ""
    data_dir: str | None = None  # TFDS data directory (TFDS's own default when None)

    @classmethod
    def from_preset(cls, name="default", **overrides):
        """The config of preset `name` (one of `PRESETS`) with `overrides` applied."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        preset = {key: value for key, value in PRESETS[name].items() if key != "about"}
        return cls(**{**preset, **overrides})

    def method_list(self):
        """The canonical method names of the grid."""
        names = _methods.default_methods() if self.methods is None else self.methods
        return list(dict.fromkeys(_methods.canonical_method_name(name) for name in names))

    def validate(self):
        """Raises ValueError (or FileNotFoundError) for anything that would fail mid-grid."""
        for axis in ("datasets", "architectures", "noise", "imbalance", "seeds"):
            if not getattr(self, axis):
                raise ValueError(f"The {axis} axis is empty.")
        if self.methods is not None and not self.methods:
            raise ValueError("The methods axis is empty.")
        for name in self.method_list():
            _methods.get_method(name)
        for name in self.architectures:
            models.architecture(name)
        self.skipped_cells()
        for spec in self.noise:
            spec = noise_lib.parse_noise_spec(spec)
            if spec.kind == "matrix":
                noise_lib.load_transition_matrix(spec.matrix_path)
        for spec in self.imbalance:
            imbalance_lib.parse_imbalance_spec(spec)
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"Seeds must be non-negative integers; got {seed!r}.")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")
        make_optimizer(self.optimizer, self.learning_rate)  # raises on a bad name or learning rate
        if self.susceptibility_probe:
            if not self.susceptibility:
                raise ValueError("susceptibility_probe is set but susceptibility is off: pass --susceptibility too.")
            self.probe_optimizer()

    def probe_optimizer(self):
        """A new optimiser from `susceptibility_probe` ("OPTIMIZER:LEARNING_RATE"), or None when it is empty."""
        if not self.susceptibility_probe:
            return None
        name, _, rate = self.susceptibility_probe.partition(":")
        try:
            return make_optimizer(name, float(rate))
        except ValueError as error:
            raise ValueError(f"susceptibility_probe must be OPTIMIZER:LEARNING_RATE, e.g. 'sgd:0.05'; got "
                             f"{self.susceptibility_probe!r} ({error})") from None

    def select(self, rows):
        """The results rows (dicts of strings) that are runs of this grid, whatever their method."""
        def key(row):
            return (row["dataset"], row["architecture"], row["noise"], row.get("imbalance") or "none", row["seed"],
                    row["epochs"], row["batch_size"], row["optimizer"], row["learning_rate"], row["max_examples"])

        grid = {key(run.fields()) for run in self.runs()}
        return [row for row in rows if key(row) in grid]

    def skipped_cells(self):
        """The (dataset, architecture) pairs of `skip`; raises ValueError for an entry that names no cell of the grid."""
        cells = set()
        for entry in self.skip:
            dataset, slash, architecture = str(entry).rpartition("/")
            if not slash or (dataset, architecture) not in itertools.product(self.datasets, self.architectures):
                raise ValueError(
                    f"skip entry {entry!r} names no cell of the grid: write DATASET/ARCHITECTURE with DATASET one of "
                    f"{list(self.datasets)} and ARCHITECTURE one of {list(self.architectures)}."
                )
            cells.add((dataset, architecture))
        return cells

    def runs(self):
        """Every `RunSpec` of the grid, grouped so that each (dataset, imbalance, noise, seed) loads once."""
        noises = [str(noise_lib.parse_noise_spec(spec)) for spec in self.noise]
        imbalances = [str(imbalance_lib.parse_imbalance_spec(spec)) for spec in self.imbalance]
        axes = (self.datasets, imbalances, noises, self.seeds, self.architectures, self.method_list())
        skipped = self.skipped_cells()
        return [
            RunSpec(
                dataset, architecture, noise, method, seed, self.epochs, self.batch_size, self.optimizer,
                float(self.learning_rate), self.max_examples, imbalance,
            )
            # dict.fromkeys: each value once, in the order given.
            for dataset, imbalance, noise, seed, architecture, method in itertools.product(*map(dict.fromkeys, axes))
            if (dataset, architecture) not in skipped
        ]


def describe_preset(name):
    """One line for preset `name`: what it is for and its grid, from `PRESETS` itself."""
    config = BenchmarkConfig.from_preset(name)
    methods = "every method" if config.methods is None else ", ".join(config.methods)
    imbalance = "" if config.imbalance == ("none",) else f"; imbalance {', '.join(config.imbalance)}"
    imbalance += f"; without {', '.join(config.skip)}" if config.skip else ""
    return (
        f"{name}: {PRESETS[name]['about']} ({len(config.runs())} runs: {methods}; {', '.join(config.datasets)}; "
        f"{', '.join(config.architectures)}; noise {', '.join(config.noise)}{imbalance}; {len(config.seeds)} seeds; "
        f"{config.epochs} epochs; -> {config.output_dir})"
    )
