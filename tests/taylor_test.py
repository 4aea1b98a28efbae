import json
import math

import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import TaylorLoss
from tfrobust.losses import taylor

ORDER3 = [0.3, 0.6, 0.5, -1.2, 2.0, 0.7, -0.4, 0.25]


def polynomial_by_hand(y, p, coefficients):
    """Order-3 f(y, p) written out term by term, independently of term_powers()."""
    a, b, t01, t02, t11, t03, t12, t21 = coefficients
    u, v = y - a, p - b
    return t01 * v + t02 * v**2 + t11 * u * v + t03 * v**3 + t12 * u * v**2 + t21 * u**2 * v


def test_layout_and_lengths():
    assert taylor.term_powers(3) == [(0, 1), (0, 2), (1, 1), (0, 3), (1, 2), (2, 1)]
    assert [taylor.num_coefficients(k) for k in (1, 2, 3, 4)] == [3, 5, 8, 12]
    assert taylor.term_powers(2) == [(0, 1), (0, 2), (1, 1)]
    # Every kept term has a p-derivative; no term repeats.
    powers = taylor.term_powers(4)
    assert all(j >= 1 for _, j in powers) and len(set(powers)) == len(powers) == 10


def test_value_matches_polynomial_by_hand():
    labels, probs, _ = loss_helpers.random_batch(num_classes=5)
    onehot = np.eye(5)[labels]
    expected = -polynomial_by_hand(onehot, probs.astype("float64"), ORDER3).sum(axis=1)
    loss = TaylorLoss(ORDER3, reduction=None)
    np.testing.assert_allclose(np.asarray(loss(labels, probs)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(TaylorLoss(ORDER3)(labels, probs)), expected.mean(), rtol=1e-5)


def test_order_two_and_four_by_hand():
    labels, probs, _ = loss_helpers.random_batch(num_classes=3, seed=3)
    y = np.eye(3)[labels]
    p = probs.astype("float64")
    a, b, t01, t02, t11 = [0.1, 0.4, 1.5, -0.5, 0.8]
    f2 = t01 * (p - b) + t02 * (p - b) ** 2 + t11 * (y - a) * (p - b)
    np.testing.assert_allclose(
        np.asarray(TaylorLoss([a, b, t01, t02, t11], reduction=None)(labels, probs)), -f2.sum(1), rtol=1e-5
    )
    coefficients = np.linspace(-1, 1, 12)
    u, v = y - coefficients[0], p - coefficients[1]
    f4 = sum(
        coefficients[2 + k] * u**i * v**j
        for k, (i, j) in enumerate([(0, 1), (0, 2), (1, 1), (0, 3), (1, 2), (2, 1), (0, 4), (1, 3), (2, 2), (3, 1)])
    )
    loss = TaylorLoss(coefficients, order=4, reduction=None)
    np.testing.assert_allclose(np.asarray(loss(labels, probs)), -f4.sum(1), rtol=1e-5, atol=1e-6)


def test_from_logits_equals_softmax_then_probabilities():
    labels, probs, logits = loss_helpers.random_batch()
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(
        float(TaylorLoss(ORDER3, from_logits=True)(labels, logits)),
        float(TaylorLoss(ORDER3)(labels, softmax)),
        rtol=1e-5,
    )


def test_squared_error_preset_is_brier_score_less_one():
    labels, probs, _ = loss_helpers.random_batch(num_classes=6)
    brier = ((np.eye(6)[labels] - probs) ** 2).sum(axis=1)
    loss = TaylorLoss.pretrained("squared_error", reduction=None)
    np.testing.assert_allclose(np.asarray(loss(labels, probs)), brier - 1.0, rtol=1e-5, atol=1e-6)


def test_mae_preset_is_mae_less_one():
    labels, probs, _ = loss_helpers.random_batch(num_classes=6)
    mae = np.abs(np.eye(6)[labels] - probs).sum(axis=1)
    loss = TaylorLoss.pretrained("mae", reduction=None)
    np.testing.assert_allclose(np.asarray(loss(labels, probs)), mae - 1.0, rtol=1e-5, atol=1e-6)


def test_cross_entropy_expansion_preset():
    labels, probs, _ = loss_helpers.random_batch(num_classes=4)
    p = probs.astype("float64")
    true = p[np.arange(len(labels)), labels]
    # Taylor cross-entropy (Feng et al. 2020), t = 3, for the true class ...
    expected = (1 - true) + (1 - true) ** 2 / 2 + (1 - true) ** 3 / 3
    # ... plus the truncated (y - a)(p - b)^3-free cubic for the other classes.
    others = (1 - p) ** 3 / 3
    others[np.arange(len(labels)), labels] = 0
    expected += others.sum(axis=1)
    loss = TaylorLoss.pretrained("cross_entropy_taylor3", reduction=None)
    np.testing.assert_allclose(np.asarray(loss(labels, probs)), expected, rtol=1e-5, atol=1e-6)


def test_cross_entropy_expansion_matches_cross_entropy_gradient_near_centre():
    # d/dp of the true-class term must agree with d/dp(-log p) = -1/p up to O((1-p)^3).
    loss = TaylorLoss.pretrained("cross_entropy_taylor3", reduction=None)
    import tensorflow as tf

    for delta in (0.1, 0.05, 0.025):
        probs = tf.Variable([[1 - delta, delta]], dtype="float32")
        with tf.GradientTape() as tape:
            value = loss(np.array([0]), probs)
        gradient = tape.gradient(value, probs).numpy()[0, 0]
        error = abs(gradient - (-1.0 / (1 - delta)))
        # The Taylor remainder of -1/p at 1 after three terms is delta^3/(1-delta)^4 ... 
        assert error <= 1.1 * delta**3 / (1 - delta) ** 4 + 1e-5


def test_standard_loss_checks(tmp_path):
    loss = TaylorLoss(ORDER3, from_logits=False, reduction="sum", name="my_taylor")
    loss_helpers.check_config_round_trip(loss)
    loss_helpers.check_config_round_trip(TaylorLoss.pretrained(from_logits=True, dtype="mixed_float16"))
    loss_helpers.check_sparse_and_onehot_agree(TaylorLoss(ORDER3, reduction=None))
    loss_helpers.check_sample_weight(TaylorLoss, {"coefficients": ORDER3})
    loss_helpers.check_finite_at_edges(TaylorLoss, {"coefficients": ORDER3})
    loss_helpers.check_mixed_precision(TaylorLoss.pretrained())
    loss_helpers.check_save_load(TaylorLoss(ORDER3), tmp_path)


def test_per_example_shape_and_model_training():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=TaylorLoss.pretrained(), metrics=["accuracy"])
    history = model.fit(x, y, epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.9


def test_presets_and_provenance():
    presets = TaylorLoss.presets()
    assert {"squared_error", "mae", "cross_entropy_taylor3"} <= set(presets)
    default = TaylorLoss.preset_info()
    assert default["default"] is True
    for key in ("command", "created", "seed", "budget", "fitness"):
        assert key in default["provenance"]
    for name in presets:
        info = TaylorLoss.preset_info(name)
        assert len(info["coefficients"]) == taylor.num_coefficients(info["order"])
        assert len(info["layout"]) == len(info["coefficients"])


def test_from_file_round_trip(tmp_path):
    path = tmp_path / "best_coefficients.json"
    record = taylor.preset_record("mine", "a test", ORDER3, 3, {"command": "test"})
    taylor.write_json_atomic(str(path), record)
    loaded = TaylorLoss.from_file(str(path), from_logits=True)
    assert loaded.coefficients == pytest.approx(ORDER3)
    assert loaded.from_logits
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: TaylorLoss([1.0, 2.0, 3.0, 4.0]), "lengths"),
        (lambda: TaylorLoss(ORDER3, order=2), "order 2 takes 5 coefficients"),
        (lambda: TaylorLoss(ORDER3, order=0), "order must be an integer"),
        (lambda: TaylorLoss([[0.1] * 8]), "flat vector"),
        (lambda: TaylorLoss([math.nan] + ORDER3[1:]), "finite"),
        (lambda: TaylorLoss.pretrained("does_not_exist"), "Unknown TaylorLoss preset 'does_not_exist'"),
    ],
)
def test_bad_construction(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No TaylorLoss coefficient file"):
        TaylorLoss.from_file(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text(json.dumps({"fitness": 1}))
    with pytest.raises(ValueError, match="no 'coefficients' entry"):
        TaylorLoss.from_file(str(tmp_path / "bad.json"))


def test_bad_labels():
    loss = TaylorLoss(ORDER3)
    probs = np.full((2, 3), 1 / 3, dtype="float32")
    with pytest.raises(ValueError, match="do not match predictions"):
        loss(np.zeros((2, 2, 1)), probs)
    with pytest.raises(ValueError, match="do not match predictions"):
        loss(np.zeros((2, 4)), probs)  # one-hot rows of the wrong width
    with pytest.raises(Exception, match="Class index out of range"):
        loss(np.array([0, 3]), probs)
    with pytest.raises(Exception, match="Class index out of range"):
        loss(np.array([-1, 0]), probs)


def test_out_of_range_labels_fail_inside_fit():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=TaylorLoss(ORDER3))
    with pytest.raises(Exception, match="Class index out of range"):
        model.fit(np.zeros((4, 2)), np.array([0, 1, 2, 7]), verbose=0)


def test_plot_loss_curves(tmp_path):
    from matplotlib import image

    from tfrobust import plotting

    path = plotting.plot_loss_curves(
        {
            "TaylorLoss (CE expansion)": TaylorLoss.pretrained(),
            "cross-entropy": keras.losses.CategoricalCrossentropy(),
        },
        str(tmp_path / "curves.png"),
    )
    pixels = image.imread(path)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 300
    # The CE-expansion curve decreases in p (a loss should reward the true class).
    values = plotting.loss_curve_values(TaylorLoss.pretrained(), np.linspace(0.05, 1, 20))
    assert np.all(np.diff(values) < 0)


def test_every_shipped_preset_loads_by_name_and_a_model_saved_with_it_reloads_whatever_the_default(tmp_path):
    # A saved model keeps the coefficients themselves (get_config), not the preset's name, so promoting a
    # new default (search.make_presets --default) cannot change a model saved with an older preset.
    for name in ("evolved_bundled", "evolved_bundled_long", *TaylorLoss.presets()):
        loss = TaylorLoss.pretrained(name)
        assert loss.get_config()["coefficients"] == TaylorLoss.preset_info(name)["coefficients"]
        assert loss.name == f"taylor_{name}"
    loss_helpers.check_save_load(TaylorLoss.pretrained("evolved_bundled"), tmp_path)
    loss_helpers.check_save_load(TaylorLoss.pretrained("evolved_bundled_long"), tmp_path)
