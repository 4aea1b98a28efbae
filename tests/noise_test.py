import json

import numpy as np
import pytest
import tensorflow as tf

from tfrobust import noise

NUM_CLASSES = 5
LARGE_N = 100_000


def uniform_labels(n=LARGE_N, num_classes=NUM_CLASSES, seed=0):
    return np.random.default_rng(seed).integers(0, num_classes, n)


def assert_close_to_matrix(clean, noisy, expected, sigmas=5.0):
    """Every cell of the empirical transition matrix lies within `sigmas`
    binomial standard deviations (sqrt(p (1 - p) / n_i)) of the expected one;
    cells with p = 0 or 1 must be exact."""
    num_classes = len(expected)
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (clean, noisy), 1)
    class_sizes = counts.sum(axis=1, keepdims=True)
    empirical = counts / class_sizes
    std = np.sqrt(expected * (1 - expected) / class_sizes)
    np.testing.assert_array_less(np.abs(empirical - expected), sigmas * std + 1e-12)


def test_symmetric_matrix_formula():
    matrix = noise.symmetric_transition_matrix(0.4, 5)
    np.testing.assert_allclose(np.diag(matrix), 0.6)
    np.testing.assert_allclose(matrix[~np.eye(5, dtype=bool)], 0.1)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)


def test_pair_flip_matrix_default_and_mapping():
    matrix = noise.pair_flip_transition_matrix(0.3, 4)
    expected = 0.7 * np.eye(4) + 0.3 * np.roll(np.eye(4), 1, axis=1)
    np.testing.assert_allclose(matrix, expected)
    asymmetric = noise.pair_flip_transition_matrix(0.4, 10, mapping=noise.CIFAR10_ASYMMETRIC_MAPPING)
    assert asymmetric[9, 1] == asymmetric[3, 5] == asymmetric[5, 3] == pytest.approx(0.4)
    assert asymmetric[9, 9] == pytest.approx(0.6)
    for clean_class in (0, 1, 6, 8):  # not a source: stays clean
        np.testing.assert_array_equal(asymmetric[clean_class], np.eye(10)[clean_class])


def test_swap_matrix_pairs_classes_both_ways():
    # Worked by hand for C = 5: 0 <-> 1 and 2 <-> 3 swap at rate 0.3, class 4 has no partner.
    expected = np.array([
        [0.7, 0.3, 0.0, 0.0, 0.0],
        [0.3, 0.7, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.7, 0.3, 0.0],
        [0.0, 0.0, 0.3, 0.7, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ])
    np.testing.assert_allclose(noise.swap_transition_matrix(0.3, 5), expected)
    np.testing.assert_allclose(noise.parse_noise_spec("swap:0.3").transition_matrix(5), expected)
    assert noise.swap_mapping(4) == {0: 1, 1: 0, 2: 3, 3: 2}
    # Realised on labels: every corrupted example went to its partner class, at about the rate.
    labels = uniform_labels(20000, num_classes=4)
    noisy = noise.parse_noise_spec("swap:0.3").apply(labels, 4, seed=1)
    flipped = noisy.is_corrupted
    np.testing.assert_array_equal(noisy.labels[flipped], labels[flipped] ^ 1)
    assert noisy.realised_rate == pytest.approx(0.3, abs=0.01)
    with pytest.raises(ValueError, match="0.5"):
        noise.parse_noise_spec("swap:0.5")


@pytest.mark.parametrize(
    "generate, expected",
    [
        (lambda y: noise.symmetric(y, 0.4, seed=1), noise.symmetric_transition_matrix(0.4, NUM_CLASSES)),
        (lambda y: noise.pair_flip(y, 0.3, seed=1), noise.pair_flip_transition_matrix(0.3, NUM_CLASSES)),
    ],
    ids=["symmetric", "pairflip"],
)
def test_realised_matrix_matches_requested(generate, expected):
    labels = uniform_labels()
    result = generate(labels)
    assert_close_to_matrix(labels, result.labels, expected)
    assert result.transition_matrix.shape == (NUM_CLASSES, NUM_CLASSES)
    np.testing.assert_allclose(result.transition_matrix.sum(axis=1), 1.0)
    off_diagonal = 1 - np.diag(expected).mean()  # classes are balanced
    assert abs(result.realised_rate - off_diagonal) < 5 * np.sqrt(off_diagonal * (1 - off_diagonal) / LARGE_N)


def test_from_transition_matrix_random_matrix():
    rng = np.random.default_rng(3)
    matrix = rng.dirichlet(np.ones(NUM_CLASSES) * 0.5, size=NUM_CLASSES)
    matrix[2] = np.eye(NUM_CLASSES)[4]  # a row with zeros and a certain flip
    labels = uniform_labels()
    result = noise.from_transition_matrix(labels, matrix, seed=7)
    assert_close_to_matrix(labels, result.labels, matrix)
    np.testing.assert_array_equal(result.labels[labels == 2], 4)
    counts = np.zeros_like(matrix)
    np.add.at(counts, (labels, result.labels), 1)
    np.testing.assert_allclose(result.transition_matrix, counts / counts.sum(axis=1, keepdims=True))


def test_record_is_consistent():
    labels = uniform_labels(2000)
    result = noise.symmetric(labels, 0.3, seed=0)
    assert result.labels.dtype == result.clean_labels.dtype == np.int64
    assert result.is_corrupted.dtype == bool
    np.testing.assert_array_equal(result.clean_labels, labels)
    np.testing.assert_array_equal(result.is_corrupted, result.labels != labels)
    assert result.realised_rate == pytest.approx(result.is_corrupted.mean())
    assert result.num_classes == NUM_CLASSES


def test_subset_recomputes_the_record():
    labels = uniform_labels(4000)
    result = noise.symmetric(labels, 0.3, seed=0)
    part = result.subset(np.arange(0, 4000, 2))
    np.testing.assert_array_equal(part.labels, result.labels[::2])
    np.testing.assert_array_equal(part.clean_labels, labels[::2])
    np.testing.assert_array_equal(part.is_corrupted, result.is_corrupted[::2])
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES))
    np.add.at(counts, (labels[::2], result.labels[::2]), 1)
    np.testing.assert_allclose(part.transition_matrix, counts / counts.sum(axis=1, keepdims=True))


def test_absent_class_gets_identity_row():
    labels = np.array([0, 1, 1, 0, 3])  # class 2 absent
    result = noise.symmetric(labels, 0.5, num_classes=4, seed=0)
    np.testing.assert_array_equal(result.transition_matrix[2], np.eye(4)[2])


def test_determinism_and_seed_dependence():
    labels = uniform_labels(5000)
    features = np.random.default_rng(1).normal(size=(5000, 6))
    generators = [
        lambda seed: noise.symmetric(labels, 0.4, seed=seed),
        lambda seed: noise.pair_flip(labels, 0.2, seed=seed),
        lambda seed: noise.instance_dependent(labels, features, 0.4, seed=seed),
    ]
    for generate in generators:
        np.testing.assert_array_equal(generate(11).labels, generate(11).labels)
        assert np.any(generate(11).labels != generate(12).labels)


def test_pair_flip_only_to_next_class():
    labels = uniform_labels(20_000)
    result = noise.pair_flip(labels, 0.45, seed=2)
    flipped = result.is_corrupted
    assert flipped.any()
    np.testing.assert_array_equal(result.labels[flipped], (labels[flipped] + 1) % NUM_CLASSES)


def test_pair_flip_mapping_dict():
    labels = uniform_labels(20_000, num_classes=10)
    result = noise.pair_flip(labels, 0.4, 10, mapping=noise.CIFAR10_ASYMMETRIC_MAPPING, seed=0)
    flipped = result.is_corrupted
    assert set(np.unique(labels[flipped])) == set(noise.CIFAR10_ASYMMETRIC_MAPPING)
    expected_targets = np.vectorize(noise.CIFAR10_ASYMMETRIC_MAPPING.get)(labels[flipped])
    np.testing.assert_array_equal(result.labels[flipped], expected_targets)


def test_instance_dependent_rate_and_rows():
    n = 20_000
    labels = uniform_labels(n, num_classes=10)
    features = np.random.default_rng(5).normal(size=(n, 3, 4))  # any trailing shape
    result = noise.instance_dependent(labels, features, 0.4, seed=0)
    # Bernoulli draws around a flip probability whose mean is 0.4 (truncation
    # of N(0.4, 0.1^2) at 0 and 1 shifts it by ~1e-5).
    assert abs(result.realised_rate - 0.4) < 5 * np.sqrt(0.4 * 0.6 / n)
    np.testing.assert_array_equal(result.is_corrupted, result.labels != labels)
    assert result.num_classes == 10


def test_instance_dependent_flips_depend_on_features():
    # One class, two different feature vectors, each repeated: where a wrong
    # label goes is set by the features, so the two groups flip differently.
    repeats = 3000
    rng = np.random.default_rng(0)
    features = np.repeat(rng.normal(size=(2, 8)), repeats, axis=0)
    labels = np.zeros(2 * repeats, dtype=np.int64)
    result = noise.instance_dependent(labels, features, 0.4, num_classes=6, seed=3)
    groups = result.labels.reshape(2, repeats)
    flipped_to = [np.bincount(group[group != 0], minlength=6) / np.sum(group != 0) for group in groups]
    total_variation = 0.5 * np.abs(flipped_to[0] - flipped_to[1]).sum()
    assert total_variation > 0.3, flipped_to
    # Symmetric noise on the same labels spreads both groups alike.
    symmetric = noise.symmetric(labels, 0.4, num_classes=6, seed=3).labels.reshape(2, repeats)
    spread = [np.bincount(group[group != 0], minlength=6) / np.sum(group != 0) for group in symmetric]
    assert 0.5 * np.abs(spread[0] - spread[1]).sum() < 0.1


def test_rate_zero_changes_nothing():
    labels = uniform_labels(1000)
    for result in (
        noise.symmetric(labels, 0.0, seed=0),
        noise.pair_flip(labels, 0.0, seed=0),
        noise.instance_dependent(labels, np.ones((1000, 2)), 0.0, seed=0),
    ):
        np.testing.assert_array_equal(result.labels, labels)
        assert result.realised_rate == 0.0


def tf_noisy_labels(labels, matrix, seed, order=None):
    """Runs tf_noise_fn in a real tf.data pipeline; returns labels by index."""
    indices = np.arange(len(labels)) if order is None else order
    dataset = tf.data.Dataset.from_tensor_slices((indices, labels[indices]))
    dataset = dataset.map(noise.tf_noise_fn(matrix, seed=seed), num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(4096)
    noisy = np.empty_like(labels)
    noisy[indices] = np.concatenate(list(dataset.as_numpy_iterator()))
    return noisy


def test_tf_noise_fn_in_tf_data_pipeline():
    labels = uniform_labels(20_000, num_classes=4).astype(np.int32)
    matrix = noise.pair_flip_transition_matrix(0.3, 4)
    matrix[1] = [0.1, 0.5, 0.2, 0.2]
    noisy = tf_noisy_labels(labels, matrix, seed=5)
    assert noisy.dtype == np.int32
    assert_close_to_matrix(labels, noisy, matrix)
    # Deterministic per example index: same seed, any order -> same labels.
    reversed_order = np.arange(len(labels))[::-1]
    np.testing.assert_array_equal(tf_noisy_labels(labels, matrix, seed=5, order=reversed_order), noisy)
    assert np.any(tf_noisy_labels(labels, matrix, seed=6) != noisy)


def test_tf_noise_fn_with_enumerate_in_map():
    features = np.arange(10, dtype=np.float32)
    labels = np.zeros(10, dtype=np.int64)
    noisy_label = noise.tf_noise_fn(noise.pair_flip_transition_matrix(0.0, 3), seed=0)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).enumerate()
    dataset = dataset.map(lambda index, example: (example[0], noisy_label(index, example[1])))
    batch = next(iter(dataset.batch(10)))
    np.testing.assert_array_equal(batch[0], features)
    np.testing.assert_array_equal(batch[1], labels)


def test_tf_noise_fn_rejects_label_out_of_range():
    noisy_label = noise.tf_noise_fn(np.eye(3), seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"labels must lie in \[0, 3\)"):
        noisy_label(tf.constant(0, tf.int64), tf.constant(3))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("none", noise.NoiseSpec("none")),
        ("symmetric:0.4", noise.NoiseSpec("symmetric", 0.4)),
        ("pairflip:0.2", noise.NoiseSpec("pairflip", 0.2)),
        ("swap:0.3", noise.NoiseSpec("swap", 0.3)),
        ("instance:0.4", noise.NoiseSpec("instance", 0.4)),
        ("matrix:/data/T.npy", noise.NoiseSpec("matrix", matrix_path="/data/T.npy")),
        (" Symmetric: 0.1 ", noise.NoiseSpec("symmetric", 0.1)),
    ],
)
def test_parse_noise_spec_round_trip(text, expected):
    spec = noise.parse_noise_spec(text)
    assert spec == expected
    assert noise.parse_noise_spec(str(spec)) == spec
    assert noise.parse_noise_spec(spec) is spec


def test_noise_spec_apply_matches_functions(tmp_path):
    labels = uniform_labels(3000, num_classes=3)
    features = np.random.default_rng(0).normal(size=(3000, 4))
    matrix = np.array([[0.8, 0.1, 0.1], [0.0, 1.0, 0.0], [0.25, 0.25, 0.5]])
    np.save(tmp_path / "T.npy", matrix)
    np.savetxt(tmp_path / "T.csv", matrix, delimiter=",")
    (tmp_path / "T.json").write_text(json.dumps(matrix.tolist()))
    direct = noise.from_transition_matrix(labels, matrix, seed=4).labels
    for name in ("T.npy", "T.csv", "T.json"):
        spec = noise.parse_noise_spec(f"matrix:{tmp_path / name}")
        np.testing.assert_array_equal(spec.apply(labels, 3, seed=4).labels, direct)
    cases = {
        "symmetric:0.3": noise.symmetric(labels, 0.3, 3, seed=4),
        "pairflip:0.3": noise.pair_flip(labels, 0.3, 3, seed=4),
        "instance:0.3": noise.instance_dependent(labels, features, 0.3, 3, seed=4),
    }
    for text, expected in cases.items():
        applied = noise.parse_noise_spec(text).apply(labels, 3, seed=4, features=features)
        np.testing.assert_array_equal(applied.labels, expected.labels)
    clean = noise.parse_noise_spec("none").apply(labels, 3, seed=4)
    np.testing.assert_array_equal(clean.labels, labels)
    np.testing.assert_array_equal(clean.transition_matrix, np.eye(3))


LABELS = np.array([0, 1, 2, 1, 0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: noise.symmetric(LABELS, -0.1, seed=0), r"noise_rate must be a number in \[0, "),
        (lambda: noise.symmetric(LABELS, 1.0, seed=0), r"noise_rate must be a number in \[0, "),
        (lambda: noise.symmetric(LABELS, float("nan"), seed=0), r"noise_rate .* got nan"),
        (lambda: noise.symmetric(LABELS, 0.7, seed=0), r"\(C - 1\) / C = 0\.6667 makes a wrong label"),
        (lambda: noise.symmetric_transition_matrix(0.2, 1), r"num_classes must be an integer >= 2"),
        (lambda: noise.pair_flip(LABELS, 0.5, seed=0), r"\[0, 0\.5\) \(at rate >= 0\.5"),
        (lambda: noise.pair_flip(LABELS, 0.2, mapping={0: 3}, seed=0), r"mapping entry 0: 3 names a class outside"),
        (lambda: noise.pair_flip(LABELS, 0.2, mapping={1: 1}, seed=0), r"maps class 1 to itself"),
        (lambda: noise.pair_flip(LABELS, 0.2, mapping=[(0, 1)], seed=0), r"mapping must be a dict"),
        (lambda: noise.from_transition_matrix(LABELS, np.ones((3, 2)) / 2, seed=0), r"must be square.*\(3, 2\)"),
        (
            lambda: noise.from_transition_matrix(LABELS, [[1.2, -0.2, 0], [0, 1, 0], [0, 0, 1]], seed=0),
            r"negative probabilities, e\.g\. T\[0, 1\]",
        ),
        (
            lambda: noise.from_transition_matrix(LABELS, [[1, 0, 0], [0.5, 0.6, 0], [0, 0, 1]], seed=0),
            r"rows must sum to 1 within 0\.0001 .*rows \[1\] sum to \[1\.1\]\. Normalise the rows\.",
        ),
        (lambda: noise.from_transition_matrix(LABELS, [[np.nan, 1], [0, 1]], seed=0), r"non-finite"),
        (lambda: noise.from_transition_matrix(LABELS, np.eye(2), seed=0), r"Labels must lie in \[0, 2\).* got 2"),
        (lambda: noise.symmetric([0, 1, -1], 0.2, 3, seed=0), r"Labels must lie in \[0, 3\).* got -1 at index 2"),
        (lambda: noise.symmetric([0, 1.5, 2], 0.2, seed=0), r"non-integer values such as 1\.5"),
        (lambda: noise.symmetric(["a", "b"], 0.2, seed=0), r"must be integer class indices; got dtype"),
        (lambda: noise.symmetric(np.eye(3), 0.2, seed=0), r"shape \(n,\) or \(n, 1\); got shape \(3, 3\)"),
        (lambda: noise.symmetric(LABELS, 0.2, seed=-1), r"seed must be a non-negative integer"),
        (lambda: noise.instance_dependent(LABELS, None, 0.2, seed=0), r"needs the features"),
        (lambda: noise.instance_dependent(LABELS, np.ones((4, 2)), 0.2, seed=0), r"5 labels but features of shape"),
        (lambda: noise.parse_noise_spec("gaussian:0.2"), r"Cannot parse noise spec.*valid noise specs are 'none'"),
        (lambda: noise.parse_noise_spec("symmetric"), r"valid noise specs are"),
        (lambda: noise.parse_noise_spec("symmetric:abc"), r"'abc' is not a number"),
        (lambda: noise.parse_noise_spec("symmetric:1.5"), r"noise_rate must be a number in \[0, 1\)"),
        (lambda: noise.parse_noise_spec("pairflip:0.6"), r"noise_rate must be a number in \[0, 0\.5\)"),
        (lambda: noise.parse_noise_spec("matrix:T.txt"), r"must end in one of \.npy, \.csv, \.json"),
        (lambda: noise.parse_noise_spec(0.4), r"A noise spec is a string"),
        (lambda: noise.NoiseSpec("none", 0.3), r"takes no rate"),
        (lambda: noise.tf_noise_fn([[0.5, 0.4], [0, 1]], seed=0), r"rows \[0\] sum to \[0\.9\]"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_matrix_spec_file_errors(tmp_path):
    missing = noise.parse_noise_spec(f"matrix:{tmp_path / 'missing.npy'}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        missing.apply(LABELS, 3, seed=0)
    np.save(tmp_path / "T2.npy", np.eye(2))
    wrong_size = noise.parse_noise_spec(f"matrix:{tmp_path / 'T2.npy'}")
    with pytest.raises(ValueError, match=r"is 2 x 2, but the labels have 3 classes"):
        wrong_size.apply(LABELS, 3, seed=0)
    np.savetxt(tmp_path / "bad.csv", [[0.5, 0.4], [0.0, 1.0]], delimiter=",")
    with pytest.raises(ValueError, match=r"bad\.csv rows must sum to 1.*rows \[0\] sum to"):
        noise.load_transition_matrix(tmp_path / "bad.csv")


def test_noise_spec_transition_matrix_is_the_matrix_labels_are_drawn_from(tmp_path):
    np.testing.assert_array_equal(noise.parse_noise_spec("none").transition_matrix(4), np.eye(4))
    np.testing.assert_array_equal(
        noise.parse_noise_spec("symmetric:0.4").transition_matrix(4), noise.symmetric_transition_matrix(0.4, 4)
    )
    np.testing.assert_array_equal(
        noise.parse_noise_spec("pairflip:0.2").transition_matrix(4), noise.pair_flip_transition_matrix(0.2, 4)
    )
    matrix = noise.pair_flip_transition_matrix(0.3, 3)
    np.save(tmp_path / "T.npy", matrix)
    from_file = noise.parse_noise_spec(f"matrix:{tmp_path / 'T.npy'}")
    np.testing.assert_array_equal(from_file.transition_matrix(3), matrix)
    with pytest.raises(ValueError, match=r"is 3 x 3, but the labels have 4 classes"):
        from_file.transition_matrix(4)
    # Instance-dependent noise has a row per example, no class-level matrix.
    assert noise.parse_noise_spec("instance:0.4").transition_matrix(4) is None
    # apply draws from exactly that matrix: the same labels as drawing from it directly.
    labels = uniform_labels(2000, 4)
    spec = noise.parse_noise_spec("pairflip:0.2")
    np.testing.assert_array_equal(
        spec.apply(labels, 4, seed=3).labels,
        noise.from_transition_matrix(labels, spec.transition_matrix(4), seed=3).labels,
    )


def test_one_set_of_transition_matrix_rules():
    """Rows rounded to 5 decimals pass (tolerance 1e-4); a 1 x 1 matrix (no noise possible) does not."""
    rounded = [[0.33333] * 3] * 3
    assert noise.from_transition_matrix([0, 1, 2], rounded, seed=0).labels.shape == (3,)
    with pytest.raises(ValueError, match=r"at least 2 classes"):
        noise.check_transition_matrix([[1.0]])
    with pytest.raises(ValueError, match=r"Its columns sum to 1: pass the transpose\."):
        noise.check_transition_matrix([[0.9, 0.6], [0.1, 0.4]])
