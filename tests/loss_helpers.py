"""Checks that every tfrobust loss gets (keras-hub style: written once, called per loss)."""

import inspect
import os

import keras
import numpy as np


def check_config_round_trip(loss):
    """Every constructor argument is in get_config(), and the config rebuilds an equal loss."""
    config = loss.get_config()
    parameters = set(inspect.signature(type(loss).__init__).parameters) - {"self"}
    missing = parameters - set(config)
    assert not missing, f"{type(loss).__name__}.get_config() lacks {sorted(missing)}"
    rebuilt = type(loss).from_config(config)
    assert rebuilt.get_config() == config
    # And through Keras's own (de)serialisation, which needs the registration.
    revived = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(revived) is type(loss)
    assert revived.get_config() == config
    return rebuilt


def random_batch(num_classes=4, batch=6, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch, num_classes)).astype("float32") * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, num_classes, size=batch)
    return labels, probs.astype("float32"), logits


def check_sparse_and_onehot_agree(loss, num_classes=4):
    labels, probs, _ = random_batch(num_classes)
    sparse = np.asarray(loss.call(labels.astype("float32"), probs))
    column = np.asarray(loss.call(labels[:, None].astype("float32"), probs))
    onehot = np.asarray(loss.call(np.eye(num_classes, dtype="float32")[labels], probs))
    assert sparse.shape == (len(labels),), f"call() must return shape (batch,), got {sparse.shape}"
    np.testing.assert_allclose(sparse, onehot, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(column, onehot, rtol=1e-6, atol=1e-6)


def check_sample_weight(loss_class, kwargs, num_classes=4):
    """sample_weight scales each example's value before the mean over the batch."""
    labels, probs, _ = random_batch(num_classes)
    weights = np.linspace(0.0, 2.0, len(labels)).astype("float32")
    per_example = np.asarray(loss_class(reduction=None, **kwargs)(labels, probs))
    weighted = float(loss_class(**kwargs)(labels, probs, sample_weight=weights))
    np.testing.assert_allclose(weighted, np.mean(per_example * weights), rtol=1e-5, atol=1e-6)


def check_finite_at_edges(loss_class, kwargs, num_classes=4):
    """Finite values and gradients at p -> 0, p -> 1 and for huge logits."""
    import tensorflow as tf

    labels = np.array([0, 1, 2, 3]) % num_classes
    saturated = np.full((4, num_classes), 0.0, dtype="float32")
    saturated[np.arange(4), labels] = 1.0  # confident and right
    wrong = np.full((4, num_classes), 0.0, dtype="float32")
    wrong[np.arange(4), (labels + 1) % num_classes] = 1.0  # confident and wrong
    uniform = np.full((4, num_classes), 1.0 / num_classes, dtype="float32")
    cases = [(False, saturated), (False, wrong), (False, uniform)]
    huge = np.zeros((4, num_classes), dtype="float32")
    huge[np.arange(4), labels] = 1e4
    huge_wrong = np.zeros((4, num_classes), dtype="float32")
    huge_wrong[np.arange(4), (labels + 1) % num_classes] = 1e4
    cases += [(True, huge), (True, huge_wrong), (True, -huge)]
    for from_logits, y_pred in cases:
        loss = loss_class(from_logits=from_logits, **kwargs)
        variable = tf.Variable(y_pred)
        with tf.GradientTape() as tape:
            value = loss(labels, variable)
        gradient = tape.gradient(value, variable)
        assert np.isfinite(float(value)), f"non-finite loss for from_logits={from_logits}, {y_pred}"
        assert gradient is not None
        assert np.all(np.isfinite(gradient.numpy())), f"non-finite gradient for {y_pred}"


def check_mixed_precision(loss, num_classes=4):
    """The loss trains a model under mixed_float16 and mixed_bfloat16 with finite values."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype("float32")
    y = rng.integers(0, num_classes, size=32)
    for policy in ("mixed_float16", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = keras.Sequential(
                [keras.Input((5,)), keras.layers.Dense(num_classes), keras.layers.Activation("softmax", dtype="float32")]
            )
            model.compile(optimizer="sgd", loss=loss)
            history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
            assert np.isfinite(history.history["loss"][-1]), policy
        finally:
            keras.mixed_precision.set_global_policy("float32")


def check_save_load(loss, tmp_path, num_classes=4):
    """A model compiled with the loss saves, reloads, and evaluates identically."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype("float32")
    y = rng.integers(0, num_classes, size=40)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(num_classes, activation="softmax")])
    model.compile(optimizer="adam", loss=loss)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    before = model.evaluate(x, y, verbose=0)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert type(reloaded.loss) is type(loss)
    assert reloaded.loss.get_config() == loss.get_config()
    after = reloaded.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(after, before, rtol=1e-6)


def check_value(loss_class, kwargs, labels, probs, logits, expected, rtol=1e-5, atol=0.0):
    """Per-example values equal `expected`, from probabilities and, with from_logits=True, from logits."""
    for from_logits, y_pred in ((False, probs), (True, logits)):
        loss = loss_class(from_logits=from_logits, reduction=None, **kwargs)
        np.testing.assert_allclose(
            np.asarray(loss(labels, y_pred)), expected, rtol=rtol, atol=atol, err_msg=f"from_logits={from_logits}"
        )


def check_standard(loss_class, kwargs, tmp_path, config_kwargs):
    """All the checks above for one loss: `kwargs` for the behaviour checks, `config_kwargs`
    (non-default values, ideally every argument) for the config round trip."""
    check_config_round_trip(loss_class(**config_kwargs))
    check_sparse_and_onehot_agree(loss_class(**kwargs))
    check_sample_weight(loss_class, kwargs)
    check_finite_at_edges(loss_class, kwargs)
    check_mixed_precision(loss_class(**kwargs))
    check_save_load(loss_class(**kwargs), tmp_path)


# One instance per loss in tfrobust.losses, with non-default hyperparameters where that
# exercises more of the loss: the backend and input-check tests run over all of them.
TRANSITION_MATRIX = [[0.8, 0.1, 0.05, 0.05], [0.1, 0.8, 0.05, 0.05], [0.05, 0.05, 0.8, 0.1], [0.05, 0.05, 0.1, 0.8]]
EVERY_LOSS = {
    "BackwardCorrection": {"transition_matrix": TRANSITION_MATRIX},
    "BiTemperedLogisticLoss": {"t1": 0.7, "t2": 1.3},
    "BootstrapHard": {"beta": 0.8},
    "BootstrapSoft": {"beta": 0.95},
    "FocalLoss": {"gamma": 2.0, "alpha": 0.25},
    "ForwardCorrection": {"transition_matrix": TRANSITION_MATRIX},
    "GeneralizedCrossEntropy": {"q": 0.7},
    "MeanAbsoluteError": {},
    "NCEandRCE": {"alpha": 1.0, "beta": 1.0},
    "NormalizedCrossEntropy": {},
    "Poly1CrossEntropy": {"epsilon": 1.0},
    "ReverseCrossEntropy": {},
    "SymmetricCrossEntropy": {"alpha": 0.1, "beta": 1.0},
    "TaylorCrossEntropy": {"order": 2},
    "TaylorLoss": {"coefficients": [0.3, 0.6, 0.5, -1.2, 2.0, 0.7, -0.4, 0.25]},
}


def make_loss(name, **kwargs):
    """A new instance of tfrobust.losses.`name` with its EVERY_LOSS settings (and `kwargs`)."""
    from tfrobust import losses

    return getattr(losses, name)(**EVERY_LOSS[name], **kwargs)
