import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits

from tfrobust import datasets
from tfrobust import noise


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", noise="symmetric:0.4", seed=3)


def sorted_rows(x, y):
    """The examples as a sorted list of (pixels, label) byte strings, to
    compare splits with their source as multisets."""
    flat = np.concatenate([x.reshape(len(x), -1), y[:, None].astype(np.float32)], axis=1)
    return sorted(row.tobytes() for row in flat.astype(np.float32))


def test_available():
    assert datasets.available() == ["digits", "mnist5k"]


def test_split_names_joins_key_value_pieces_back_onto_their_name():
    # What a comma-separated flag makes of procedural and TFDS names with settings.
    pieces = "digits, procedural:templates:classes=5,difficulty=0.2,seed=7,mnist5k,ds/cfg/a=1,b=2,,procedural:strokes".split(",")
    assert datasets.split_names(pieces) == [
        "digits", "procedural:templates:classes=5,difficulty=0.2,seed=7", "mnist5k", "ds/cfg/a=1,b=2",
        "procedural:strokes",
    ]
    # DATASET/ARCHITECTURE cells (--skip) split the same way.
    assert datasets.split_names("procedural:templates:classes=5,seed=1/mlp,mnist5k/cnn".split(",")) == [
        "procedural:templates:classes=5,seed=1/mlp", "mnist5k/cnn"]
    with pytest.raises(ValueError, match="not a data set name"):
        datasets.split_names(["seed=1", "digits"])


def test_digits_shapes_ranges_and_partition(digits):
    source = load_digits()
    assert digits.x_train.shape[1:] == digits.input_shape == (8, 8, 1)
    assert digits.num_classes == 10
    for x, y in ((digits.x_train, digits.y_train), (digits.x_val, digits.y_val), (digits.x_test, digits.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
    sizes = (len(digits.y_train), len(digits.y_val), len(digits.y_test))
    assert sum(sizes) == 1797
    assert sizes[2] == 360  # 20% of all
    assert sizes[1] == round(0.1 * (1797 - 360))  # 10% of the training pool
    # The three clean splits together are exactly the source data: disjoint, nothing lost.
    x_all = np.concatenate([digits.x_train, digits.x_val, digits.x_test])
    y_all = np.concatenate([digits.y_train_clean, digits.y_val_clean, digits.y_test])
    expected = sorted_rows((source.images / 16.0)[..., None], source.target)
    assert sorted_rows(x_all, y_all) == expected


def test_splits_are_stratified(digits):
    overall = np.bincount(load_digits().target) / 1797
    for y in (digits.y_train_clean, digits.y_val_clean, digits.y_test):
        proportions = np.bincount(y, minlength=10) / len(y)
        # Each class within one example of its exact share.
        assert np.all(np.abs(proportions - overall) <= 1.0 / len(y) + 1e-12), proportions


def test_noise_only_on_training_split(digits):
    clean = datasets.load("digits", seed=3)
    np.testing.assert_array_equal(digits.x_train, clean.x_train)
    np.testing.assert_array_equal(digits.y_train_clean, clean.y_train)
    np.testing.assert_array_equal(digits.y_val, clean.y_val)
    np.testing.assert_array_equal(digits.y_val, digits.y_val_clean)
    np.testing.assert_array_equal(digits.y_test, clean.y_test)
    np.testing.assert_array_equal(digits.is_corrupted, digits.y_train != digits.y_train_clean)
    n = len(digits.y_train)
    assert abs(digits.is_corrupted.mean() - 0.4) < 5 * np.sqrt(0.24 / n)
    assert digits.noisy_labels.realised_rate == pytest.approx(digits.is_corrupted.mean())
    assert str(digits.noise) == "symmetric:0.4"
    assert not clean.is_corrupted.any() and clean.noisy_labels.realised_rate == 0.0


def test_noisy_validation():
    data = datasets.load("digits", noise="pairflip:0.3", seed=3, noisy_validation=True)
    reference = datasets.load("digits", noise="pairflip:0.3", seed=3)
    np.testing.assert_array_equal(data.y_train, reference.y_train)
    np.testing.assert_array_equal(data.y_val_clean, reference.y_val)
    flipped = data.y_val != data.y_val_clean
    assert 0.15 < flipped.mean() < 0.45
    np.testing.assert_array_equal(data.y_val[flipped], (data.y_val_clean[flipped] + 1) % 10)
    np.testing.assert_array_equal(data.y_test, reference.y_test)


def test_determinism_and_seed(digits):
    again = datasets.load("digits", noise="symmetric:0.4", seed=3)
    for field in ("x_train", "y_train", "y_train_clean", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(digits, field))
    other = datasets.load("digits", noise="symmetric:0.4", seed=4)
    assert sorted_rows(other.x_test, other.y_test) != sorted_rows(digits.x_test, digits.y_test)


def test_mnist5k():
    data = datasets.load("mnist5k", noise=noise.NoiseSpec("instance", 0.3), seed=0)
    assert data.input_shape == (28, 28, 1) and data.num_classes == 10
    y_all = np.concatenate([data.y_train_clean, data.y_val_clean, data.y_test])
    np.testing.assert_array_equal(np.bincount(y_all), [500] * 10)
    assert len(data.y_test) == 1000 and len(data.y_val) == 400
    np.testing.assert_array_equal(np.bincount(data.y_test), [100] * 10)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    assert 0.2 < data.noisy_labels.realised_rate < 0.4


def test_max_examples_and_empty_validation():
    data = datasets.load("digits", max_examples=500, validation_fraction=0.0, seed=1)
    assert len(data.y_train) + len(data.y_test) == 500
    assert len(data.y_test) == 100
    assert data.x_val.shape == (0, 8, 8, 1) and data.y_val.shape == (0,)
    assert np.all(np.abs(np.bincount(data.y_train, minlength=10) - 40) <= 2)


def test_train_dataset_yields_batches(digits):
    batches = list(digits.train_dataset(64, shuffle=False).as_numpy_iterator())
    x, y = batches[0]
    assert x.shape == (64, 8, 8, 1) and x.dtype == np.float32
    assert y.shape == (64,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([batch[1] for batch in batches]), digits.y_train)

    with_clean = next(iter(digits.train_dataset(32, shuffle=False, with_clean_labels=True)))
    features, labels = with_clean
    assert set(labels) == {"noisy", "clean"}
    np.testing.assert_array_equal(labels["noisy"], digits.y_train[:32])
    np.testing.assert_array_equal(labels["clean"], digits.y_train_clean[:32])
    np.testing.assert_array_equal(features, digits.x_train[:32])


def test_train_dataset_shuffle_is_seeded_and_keeps_pairs(digits):
    def first_epoch(seed):
        dataset = digits.train_dataset(len(digits.y_train), seed=seed, with_clean_labels=True)
        x, labels = next(iter(dataset))
        return x.numpy(), labels["noisy"].numpy(), labels["clean"].numpy()

    x, noisy, clean = first_epoch(0)
    x_again, noisy_again, _ = first_epoch(0)
    np.testing.assert_array_equal(noisy, noisy_again)
    np.testing.assert_array_equal(x, x_again)
    assert np.any(first_epoch(1)[2] != clean)
    assert np.any(clean != digits.y_train_clean)  # really shuffled
    # Shuffling moves each example with its own labels.
    assert sorted_rows(x, noisy) == sorted_rows(digits.x_train, digits.y_train)
    assert sorted_rows(x, clean) == sorted_rows(digits.x_train, digits.y_train_clean)


def test_repeat_and_eval_datasets(digits):
    repeated = digits.train_dataset(1000, repeat=True)
    assert len(list(repeated.take(5))) == 5  # more than one epoch
    val = list(digits.validation_dataset(50).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([y for _, y in val]), digits.y_val)
    x_test, y_test = next(iter(digits.test_dataset(1000)))
    assert x_test.shape == digits.x_test.shape and y_test.dtype == tf.int64
    np.testing.assert_array_equal(y_test, digits.y_test)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        digits.test_dataset(0)


def test_repr(digits):
    text = repr(digits)
    assert "name='digits'" in text and "noise='symmetric:0.4'" in text and "realised_rate=" in text


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """Two tiny real TFDS datasets written offline: 200 digits as images with
    train/test splits, and 150 digits as 64-d vectors with only a train split."""
    data_dir = tmp_path_factory.mktemp("tfds")
    source = load_digits()
    images = source.images[:200, :, :, None].astype(np.uint8)
    labels = source.target[:200].astype(np.int64)
    image_features = tfds.features.FeaturesDict(
        {"image": tfds.features.Image(shape=(8, 8, 1)), "label": tfds.features.ClassLabel(num_classes=10)}
    )
    tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_digits",
        version="1.0.0",
        features=image_features,
        split_datasets={
            "train": tf.data.Dataset.from_tensor_slices({"image": images[:150], "label": labels[:150]}),
            "test": tf.data.Dataset.from_tensor_slices({"image": images[150:], "label": labels[150:]}),
        },
        data_dir=data_dir,
    )
    vector_features = tfds.features.FeaturesDict(
        {
            "features": tfds.features.Tensor(shape=(64,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
    )
    tfds.dataset_builders.store_as_tfds_dataset(
        name="tiny_digit_vectors",
        version="1.0.0",
        features=vector_features,
        split_datasets={
            "train": tf.data.Dataset.from_tensor_slices(
                {"features": source.data[:150].astype(np.float32), "label": labels[:150]}
            )
        },
        data_dir=data_dir,
    )
    return data_dir


def test_tfds_image_dataset_offline(tfds_dir):
    data = datasets.load("tfds:tiny_digits", noise="symmetric:0.3", data_dir=tfds_dir, seed=0)
    assert data.input_shape == (8, 8, 1) and data.num_classes == 10
    assert len(data.y_test) == 50  # the dataset's own test split
    assert len(data.y_train) + len(data.y_val) == 150 and len(data.y_val) == 15
    assert data.x_train.dtype == np.float32 and data.x_train.max() <= 16 / 255
    source = load_digits()
    expected_test = sorted_rows(source.images[150:200, :, :, None] / 255.0, source.target[150:200])
    assert sorted_rows(data.x_test, data.y_test) == expected_test
    assert data.is_corrupted.any()
    capped = datasets.load("tiny_digits", data_dir=tfds_dir, seed=0, max_examples=100)
    assert len(capped.y_test) == 50 and len(capped.y_train) + len(capped.y_val) == 100
    with pytest.raises(ValueError, match=r"Cannot draw a stratified validation split of 0\.1 from 40 examples"):
        datasets.load("tiny_digits", data_dir=tfds_dir, max_examples=40)


def test_tfds_vector_dataset_without_test_split(tfds_dir):
    data = datasets.load("tiny_digit_vectors", data_dir=tfds_dir, test_fraction=0.2, seed=0)
    assert data.input_shape == (64,)
    assert len(data.y_test) == 30 and len(data.y_train) + len(data.y_val) == 120
    assert data.x_train.max() == 16.0  # vectors are not rescaled


def test_tfds_unprepared_fails_with_instructions_and_downloads_nothing(tmp_path, monkeypatch):
    # Without download=True a missing data set must never start TFDS's download and prepare step.
    preparations = []
    make_builder = tfds.builder

    def builder_that_records_preparation(*args, **kwargs):
        builder = make_builder(*args, **kwargs)
        builder.download_and_prepare = lambda *a, **k: preparations.append(builder.name)
        return builder

    monkeypatch.setattr(tfds, "builder", builder_that_records_preparation)
    with pytest.raises(FileNotFoundError, match=r"not prepared.*tfds build mnist --data_dir=.*download=True"):
        datasets.load("mnist", data_dir=tmp_path)
    assert preparations == []
    assert not any(tmp_path.rglob("*.tfrecord*")) and not any(tmp_path.rglob("*.gz"))


def test_unknown_dataset_lists_bundled_names(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown dataset 'no_such_data'.*digits, mnist5k"):
        datasets.load("no_such_data", data_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"noise": "gaussian:0.1"}, "valid noise specs are"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\)"),
        ({"test_fraction": 0.0}, r"test_fraction must be in \(0, 1\)"),
        ({"max_examples": 0}, "max_examples must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"max_examples": 5}, r"stratified subsample of 5 from 1797 examples of 10 classes"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        datasets.load("digits", **kwargs)
