"""Procedurally generated image classification data sets: offline, seeded, tunable.

`tfrobust.datasets.load("procedural:strokes:classes=5,difficulty=0.7")`
loads one like any bundled data set. The class structure is under control:
the number of classes, the image size and how hard the classes are to tell
apart, so a loss search can draw many distinct tasks without a download.

Name grammar
------------
    procedural:FAMILY[:KEY=VALUE[,KEY=VALUE...]]

FAMILY (see `FAMILIES`):
    templates  each class is a smooth random image (a sum of Gaussian bumps);
               an example is its class template, shifted, with its bumps
               jittered, blended with a background shared by every class,
               plus pixel noise.
    strokes    each class is a few random line segments (a glyph); an
               example redraws them with jittered end points, shifted, with
               a random distractor stroke and pixel noise.

KEYS (all optional; defaults in `DEFAULTS`):
    classes     number of classes, an integer in [2, 100]
    size        image height and width in pixels, an integer in [8, 64]
    difficulty  a number in [0, 1]: larger means larger shifts and jitter,
                more pixel noise and (templates) more shared background
    examples    examples in all, an integer of at least 10 per class; each
                class gets `examples // classes` (exactly balanced)
    seed        a non-negative integer: which data set of the family (the
                class prototypes and the examples). It is part of the data
                set's identity, like the name of a bundled one; the `seed`
                of `datasets.load` then draws splits and label noise.

Images are float32 in [0, 1], shaped `(n, size, size, 1)`; labels int64.
Equal names give equal arrays (on any machine: numpy's PCG64 generator).
"""

import dataclasses
import functools

import numpy as np

PREFIX = "procedural:"
FAMILIES = ("templates", "strokes")
DEFAULTS = {"classes": 10, "size": 16, "difficulty": 0.5, "examples": 2000, "seed": 0}
_RANGES = {"classes": (2, 100), "size": (8, 64), "difficulty": (0.0, 1.0)}
_GRAMMAR = ("procedural:FAMILY[:KEY=VALUE[,KEY=VALUE...]] with FAMILY one of "
            f"{list(FAMILIES)} and KEY one of {list(DEFAULTS)}, e.g. 'procedural:strokes:classes=5,difficulty=0.7'")
_CHUNK = 256  # examples rendered at once (bounds the (chunk, primitives, size, size) temporaries)


@dataclasses.dataclass(frozen=True)
class ProceduralSpec:
    """A parsed procedural data set name (see the module docstring)."""

    family: str
    classes: int = DEFAULTS["classes"]
    size: int = DEFAULTS["size"]
    difficulty: float = DEFAULTS["difficulty"]
    examples: int = DEFAULTS["examples"]
    seed: int = DEFAULTS["seed"]

    @property
    def name(self):
        """The canonical name: every key spelled out, so equal data sets have equal names."""
        keys = ",".join(f"{key}={getattr(self, key)}" for key in DEFAULTS)
        return f"{PREFIX}{self.family}:{keys}"

    @property
    def per_class(self):
        return self.examples // self.classes


def is_procedural(name):
    """Whether `name` asks for a procedural data set (starts with "procedural:")."""
    return isinstance(name, str) and name.startswith(PREFIX)


def parse(name):
    """The `ProceduralSpec` of `name`; a ValueError names the bad part and the grammar."""
    if not is_procedural(name):
        raise ValueError(f"{name!r} is not a procedural data set name; the grammar is {_GRAMMAR}.")
    family, _, arguments = name[len(PREFIX):].partition(":")
    family = family.strip()
    if family not in FAMILIES:
        raise ValueError(f"Procedural data set {name!r}: unknown family {family!r}; the grammar is {_GRAMMAR}.")
    values = {}
    for pair in filter(None, (part.strip() for part in arguments.split(","))):
        key, equals, text = (piece.strip() for piece in pair.partition("="))
        if not equals or key not in DEFAULTS:
            what = f"unknown key {key!r}" if equals else f"{pair!r} is not KEY=VALUE"
            raise ValueError(f"Procedural data set {name!r}: {what}; the grammar is {_GRAMMAR}.")
        if key in values:
            raise ValueError(f"Procedural data set {name!r}: key {key!r} is given twice.")
        values[key] = _value(name, key, text)
    spec = ProceduralSpec(family, **values)
    if spec.per_class < 10:
        raise ValueError(
            f"Procedural data set {name!r}: examples={spec.examples} gives {spec.per_class} per class for "
            f"{spec.classes} classes; ask for at least {10 * spec.classes} examples (10 per class)."
        )
    return spec


def _value(name, key, text):
    try:
        value = float(text) if key == "difficulty" else int(text)
    except ValueError:
        kind = "a number" if key == "difficulty" else "an integer"
        raise ValueError(f"Procedural data set {name!r}: {key}={text!r} is not {kind}.") from None
    low, high = _RANGES.get(key, (0 if key == "seed" else 1, None))
    if not np.isfinite(value) or value < low or (high is not None and value > high):
        where = f"in [{low}, {high}]" if high is not None else f"at least {low}"
        raise ValueError(f"Procedural data set {name!r}: {key}={text} must be {where}.")
    return value


def generate(name):
    """`(images, labels, num_classes)` of the procedural data set `name`.

    Cached per process (the arrays are read-only; index them to get copies).

    Raises:
        ValueError: a name that does not follow the grammar (module docstring).
    """
    return _generate(parse(name).name)


@functools.lru_cache(maxsize=8)
def _generate(canonical_name):
    spec = parse(canonical_name)
    rng = np.random.default_rng([spec.seed, FAMILIES.index(spec.family), spec.classes, spec.size])
    labels = np.repeat(np.arange(spec.classes, dtype=np.int64), spec.per_class)
    rng.shuffle(labels)
    render = _templates if spec.family == "templates" else _strokes
    images = render(spec, labels, rng)
    noise = rng.standard_normal(images.shape).astype(np.float32)
    images = np.clip(images + (0.05 + 0.35 * spec.difficulty) * noise, 0.0, 1.0)[..., np.newaxis]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels, spec.classes


def _grid(size):
    """Pixel centre coordinates, in units of the image side (0..1), shaped to broadcast."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    return axis[:, np.newaxis], axis[np.newaxis, :]  # rows (y), columns (x)


def _shifts(spec, count, rng):
    """Per-example translation of the whole image: up to a quarter of the side at difficulty 1."""
    return rng.uniform(-0.25, 0.25, size=(count, 1, 2)) * spec.difficulty


def _templates(spec, labels, rng):
    bumps = 6
    # Class prototypes: bump centres, widths and signed amplitudes; one shared background.
    centres = rng.uniform(0.15, 0.85, size=(spec.classes, bumps, 2))
    widths = rng.uniform(0.06, 0.16, size=(spec.classes, bumps))
    amplitudes = rng.choice([-1.0, 1.0], size=(spec.classes, bumps)) * rng.uniform(0.5, 1.0, (spec.classes, bumps))
    background = rng.uniform(0.15, 0.85, size=(bumps, 2)), rng.uniform(0.06, 0.16, bumps), rng.uniform(0.5, 1.0, bumps)
    blend = 0.7 * spec.difficulty  # share of the shared background in every example
    rows, columns = _grid(spec.size)
    images = np.empty((len(labels), spec.size, spec.size), dtype=np.float32)
    for start in range(0, len(labels), _CHUNK):
        chunk = labels[start:start + _CHUNK]
        jitter = rng.normal(0.0, 0.05 * spec.difficulty, size=(len(chunk), bumps, 2))
        shift = _shifts(spec, len(chunk), rng)
        own = _bumps(centres[chunk] + jitter + shift, widths[chunk], amplitudes[chunk], rows, columns)
        shared = _bumps(background[0][np.newaxis] + shift, background[1][np.newaxis], background[2][np.newaxis],
                        rows, columns)
        images[start:start + len(chunk)] = 0.5 + 0.4 * ((1 - blend) * own + blend * shared)
    return images


def _bumps(centres, widths, amplitudes, rows, columns):
    """Sum of Gaussian bumps: centres (n, k, 2) as (x, y), widths and amplitudes (n, k) -> (n, size, size)."""
    x = centres[..., 0, np.newaxis, np.newaxis]
    y = centres[..., 1, np.newaxis, np.newaxis]
    squared = (columns - x) ** 2 + (rows - y) ** 2
    values = amplitudes[..., np.newaxis, np.newaxis] * np.exp(-squared / (2 * widths[..., np.newaxis, np.newaxis] ** 2))
    return np.clip(values.sum(axis=1), -1.0, 1.0)


def _strokes(spec, labels, rng):
    strokes = 3
    ends = rng.uniform(0.15, 0.85, size=(spec.classes, strokes, 2, 2))  # (class, stroke, end, xy)
    thickness = 0.6 / spec.size + 0.02  # at least about a pixel wide at every size
    rows, columns = _grid(spec.size)
    images = np.empty((len(labels), spec.size, spec.size), dtype=np.float32)
    for start in range(0, len(labels), _CHUNK):
        chunk = labels[start:start + _CHUNK]
        jitter = rng.normal(0.0, 0.02 + 0.06 * spec.difficulty, size=(len(chunk), strokes, 2, 2))
        segments = ends[chunk] + jitter + _shifts(spec, len(chunk), rng)[:, :, np.newaxis, :]
        # A distractor stroke, present with probability `difficulty`, drawn anywhere.
        distractor = rng.uniform(0.05, 0.95, size=(len(chunk), 1, 2, 2))
        present = (rng.random(len(chunk)) < spec.difficulty)[:, np.newaxis, np.newaxis, np.newaxis]
        segments = np.concatenate([segments, np.where(present, distractor, np.nan)], axis=1)
        distance = _segment_distance(segments, rows, columns)
        ink = np.exp(-np.nan_to_num(distance, nan=np.inf) ** 2 / (2 * thickness**2))
        images[start:start + len(chunk)] = ink.max(axis=1)
    return images


def _segment_distance(segments, rows, columns):
    """Distance of every pixel centre to each segment: segments (n, k, 2 ends, xy) -> (n, k, size, size)."""
    start = segments[:, :, 0, :, np.newaxis, np.newaxis]
    direction = segments[:, :, 1, :, np.newaxis, np.newaxis] - start
    dx, dy = columns - start[:, :, 0], rows - start[:, :, 1]
    length2 = np.maximum(direction[:, :, 0] ** 2 + direction[:, :, 1] ** 2, 1e-12)
    along = np.clip((dx * direction[:, :, 0] + dy * direction[:, :, 1]) / length2, 0.0, 1.0)
    return np.hypot(dx - along * direction[:, :, 0], dy - along * direction[:, :, 1])
