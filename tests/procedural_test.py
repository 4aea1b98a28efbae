"""Procedurally generated data sets: grammar, determinism, balance, and that difficulty means something."""

import numpy as np
import pytest

from tfrobust import datasets
from tfrobust import procedural


def test_names_parse_to_a_canonical_spec():
    spec = procedural.parse("procedural:strokes: classes=5, difficulty=0.25")
    assert spec == procedural.ProceduralSpec("strokes", classes=5, difficulty=0.25)
    assert spec.name == "procedural:strokes:classes=5,size=16,difficulty=0.25,examples=2000,seed=0"
    assert procedural.parse(spec.name) == spec
    assert procedural.parse("procedural:templates") == procedural.ProceduralSpec("templates")
    assert not procedural.is_procedural("digits")


@pytest.mark.parametrize("name, message", [
    ("procedural:circles", "unknown family 'circles'"),
    ("procedural:strokes:colour=3", "unknown key 'colour'"),
    ("procedural:strokes:classes", "'classes' is not KEY=VALUE"),
    ("procedural:strokes:classes=2.5", "classes='2.5' is not an integer"),
    ("procedural:strokes:classes=1", "classes=1 must be in [2, 100]"),
    ("procedural:strokes:size=4", "size=4 must be in [8, 64]"),
    ("procedural:strokes:difficulty=1.5", "difficulty=1.5 must be in [0.0, 1.0]"),
    ("procedural:strokes:difficulty=nan", "must be in [0.0, 1.0]"),
    ("procedural:strokes:seed=-1", "seed=-1 must be at least 0"),
    ("procedural:strokes:classes=3,classes=4", "key 'classes' is given twice"),
    ("procedural:strokes:classes=50,examples=100", "at least 500 examples"),
])
def test_bad_names_say_what_is_wrong_and_show_the_grammar(name, message):
    with pytest.raises(ValueError, match="Procedural data set") as error:
        procedural.generate(name)
    assert message in str(error.value)
    with pytest.raises(ValueError, match="procedural"):
        datasets.load(name)


@pytest.mark.parametrize("family", procedural.FAMILIES)
def test_shapes_range_balance_and_determinism(family):
    name = f"procedural:{family}:classes=4,size=12,examples=400,seed=3"
    images, labels, num_classes = procedural.generate(name)
    assert images.shape == (400, 12, 12, 1) and images.dtype == np.float32
    assert labels.dtype == np.int64 and num_classes == 4
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05
    np.testing.assert_array_equal(np.bincount(labels), [100] * 4)
    # Equal names give equal arrays, also after the cache is dropped; another seed gives others.
    procedural._generate.cache_clear()
    again, again_labels, _ = procedural.generate(name.replace("seed=3", " seed=3"))
    np.testing.assert_array_equal(again, images)
    np.testing.assert_array_equal(again_labels, labels)
    other, _, _ = procedural.generate(name.replace("seed=3", "seed=4"))
    assert not np.allclose(other, images)


def test_load_splits_a_procedural_set_like_a_bundled_one():
    name = "procedural:templates:classes=3,size=8,examples=600"
    data = datasets.load(name, noise="instance:0.4", seed=1)
    assert data.input_shape == (8, 8, 1) and data.num_classes == 3
    assert len(data.y_train) + len(data.y_val) + len(data.y_test) == 600
    assert 0.3 < data.noisy_labels.realised_rate < 0.5
    np.testing.assert_array_equal(datasets.load(name, noise="instance:0.4", seed=1).y_train, data.y_train)
    assert datasets.load(name, max_examples=300).num_classes == 3


def _linear_accuracy(name):
    """Held-out accuracy of the nearest class mean (a linear classifier), fitted on 700 examples."""
    images, labels, num_classes = procedural.generate(name)
    features = images.reshape(len(images), -1)
    means = np.stack([features[:700][labels[:700] == label].mean(axis=0) for label in range(num_classes)])
    distances = ((features[700:, np.newaxis, :] - means[np.newaxis]) ** 2).sum(axis=-1)
    return float((np.argmin(distances, axis=1) == labels[700:]).mean())


@pytest.mark.parametrize("family", procedural.FAMILIES)
def test_a_linear_classifier_learns_it_and_harder_is_harder(family):
    accuracies = [_linear_accuracy(f"procedural:{family}:examples=1000,difficulty={d}") for d in (0.0, 0.5, 1.0)]
    chance = 0.1
    assert accuracies[0] > 0.9 and accuracies[1] > 3 * chance, accuracies
    assert accuracies[0] > accuracies[1] + 0.1 > accuracies[2] + 0.2, accuracies
