"""Few-shot episodes: shapes, classes, support/query disjointness, noise rate, and bad input named."""

import numpy as np
import pytest

from tfrobust import episodes


def _indexed_examples(classes=6, per_class=12):
    """Examples whose feature is their own row index, so episodes can be traced back to the source."""
    y = np.repeat(np.arange(classes), per_class)
    x = np.arange(len(y), dtype=np.float32)[:, np.newaxis]
    return x, y


def test_episode_shapes_classes_and_relabelling():
    x, y = _indexed_examples()
    pool = episodes.sample_episodes(x, y, ways=3, shots=2, queries=4, num_episodes=50, seed=0)
    assert len(pool) == 50
    assert pool.support_x.shape == (50, 6, 1) and pool.query_x.shape == (50, 12, 1)
    assert pool.support_y.shape == (50, 6) and pool.query_y.shape == (50, 12) and pool.classes.shape == (50, 3)
    np.testing.assert_array_equal(pool.support_y, pool.support_y_clean)  # no noise asked
    for episode in range(50):
        assert len(set(pool.classes[episode])) == 3
        support_rows = pool.support_x[episode, :, 0].astype(int)
        query_rows = pool.query_x[episode, :, 0].astype(int)
        assert not set(support_rows) & set(query_rows)  # support and query disjoint
        # Episode label k is original class classes[k], for support and query alike.
        np.testing.assert_array_equal(y[support_rows], pool.classes[episode][pool.support_y_clean[episode]])
        np.testing.assert_array_equal(y[query_rows], pool.classes[episode][pool.query_y_clean[episode]])
        assert sorted(np.bincount(pool.support_y[episode], minlength=3)) == [2, 2, 2]
    again = episodes.sample_episodes(x, y, ways=3, shots=2, queries=4, num_episodes=50, seed=0)
    np.testing.assert_array_equal(again.support_x, pool.support_x)  # seeded


def test_noise_is_symmetric_within_the_episode_at_the_given_rate():
    x, y = _indexed_examples()
    pool = episodes.sample_episodes(x, y, ways=4, shots=5, queries=3, num_episodes=2000, seed=1,
                                    support_noise=0.3, query_noise=0.1)
    flipped = pool.support_y != pool.support_y_clean
    # 40,000 support labels: the binomial std of the rate is 0.0023.
    assert abs(flipped.mean() - 0.3) < 0.012
    assert abs(pool.query_noise_rate - 0.1) < 0.01
    assert pool.support_y.min() >= 0 and pool.support_y.max() < 4
    # Symmetric: a wrong label is each of the three other labels equally often.
    counts = np.zeros((4, 4))
    np.add.at(counts, (pool.support_y_clean[flipped], pool.support_y[flipped]), 1)
    off_diagonal = counts[~np.eye(4, dtype=bool)]
    assert np.all(np.diag(counts) == 0)
    assert off_diagonal.std() / off_diagonal.mean() < 0.1
    # Tasks differ in their number of wrong labels (what a per-task weight can see).
    assert flipped.sum(axis=1).std() > 1.0


def test_load_fewshot_splits_classes_and_holds_out_clean_validation_examples():
    split = episodes.load_fewshot("digits", test_classes=(6, 7, 8, 9), seed=0)
    assert split.train_classes == (0, 1, 2, 3, 4, 5) and split.test_classes == (6, 7, 8, 9)
    assert set(np.unique(split.y_train)) == set(range(6)) == set(np.unique(split.y_validation))
    assert set(np.unique(split.y_test)) == {6, 7, 8, 9}
    assert len(split.y_train) + len(split.y_validation) + len(split.y_test) == 1797  # every digit used once
    fraction = len(split.y_validation) / (len(split.y_train) + len(split.y_validation))
    assert 0.18 < fraction < 0.22
    train_rows = {row.tobytes() for row in split.x_train}
    assert not any(row.tobytes() in train_rows for row in split.x_validation[:50])


@pytest.mark.parametrize("kwargs, message", [
    (dict(ways=7), "7-way episode needs 7 classes"),
    (dict(shots=10, queries=5), "class 0 has only 12"),
    (dict(ways=1), "ways must be at least 2"),
    (dict(support_noise=1.0), "support_noise must be a rate"),
    (dict(num_episodes=0), "num_episodes must be a positive integer"),
])
def test_bad_episode_settings_are_named(kwargs, message):
    x, y = _indexed_examples()
    settings = dict(ways=3, shots=2, queries=2, num_episodes=5) | kwargs
    with pytest.raises(ValueError, match=message):
        episodes.sample_episodes(x, y, **settings)


def test_bad_class_split_and_oversized_meta_batch_are_named():
    with pytest.raises(ValueError, match="at least two classes on each side"):
        episodes.load_fewshot("digits", test_classes=(9,))
    with pytest.raises(ValueError, match="must be classes of 'digits'"):
        episodes.load_fewshot("digits", test_classes=(8, 12))
    x, y = _indexed_examples()
    pool = episodes.sample_episodes(x, y, ways=2, shots=1, queries=1, num_episodes=3)
    with pytest.raises(ValueError, match="larger than the 3 episodes"):
        pool.dataset(4)
