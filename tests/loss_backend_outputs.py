"""What every tfrobust loss computes on the current Keras backend, as JSON-ready numbers.

`tests/backends_test.py` calls `outputs()` in-process on TensorFlow and runs
this module as a script under `KERAS_BACKEND=jax` (the backend is fixed when
Keras is imported, so one process cannot hold both), then compares the two:

    KERAS_BACKEND=jax python -m tests.loss_backend_outputs OUTPUT_DIR > outputs.json

For each loss: per-example values and gradients with respect to the
predictions (from probabilities and from logits), the loss history of a tiny
`fit` from fixed weights, and a model save / load in OUTPUT_DIR with the
predictions and `evaluate()` before and after.
"""

import json
import os
import sys

import keras
import numpy as np
from keras import ops

from tests import loss_helpers

NUM_CLASSES = 4


def value_and_gradient(loss, labels, y_pred):
    """Per-example loss values and d sum(values) / d y_pred, with the backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        variable = tf.constant(y_pred)
        with tf.GradientTape() as tape:
            tape.watch(variable)
            values = loss(labels, variable)
            total = ops.sum(values)
        return values.numpy(), tape.gradient(total, variable).numpy()
    if backend == "jax":
        import jax

        def total(values):
            per_example = loss(labels, values)
            return ops.sum(per_example), per_example

        (_, values), grads = jax.value_and_grad(total, has_aux=True)(ops.convert_to_tensor(y_pred))
        return np.asarray(values), np.asarray(grads)
    raise NotImplementedError(f"No gradient for the {backend!r} backend here: add its autodiff call.")


def _model(num_features):
    """Dense + softmax from fixed weights: the same starting point on every backend."""
    rng = np.random.default_rng(7)
    model = keras.Sequential([keras.Input((num_features,)), keras.layers.Dense(NUM_CLASSES, activation="softmax")])
    model.set_weights([rng.normal(scale=0.5, size=(num_features, NUM_CLASSES)).astype("float32"),
                       np.zeros(NUM_CLASSES, "float32")])
    return model


def fit_data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(32, 5)).astype("float32"), rng.integers(0, NUM_CLASSES, size=32)


def fit(name):
    """The model after two epochs of SGD from fixed weights with loss `name`, and its loss history."""
    x, y = fit_data()
    model = _model(x.shape[1])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss_helpers.make_loss(name))
    history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0).history["loss"]
    return model, [float(value) for value in history]


def save_and_reload(model, path):
    """Predictions and evaluate() of `model` and of its copy saved to `path` and loaded back."""
    x, y = fit_data()
    model.save(path)
    reloaded = keras.models.load_model(path)
    return {
        # A direct call, not predict(): the same numbers without compiling a predict function.
        "predictions": ops.convert_to_numpy(model(x)).tolist(),
        "evaluate": float(model.evaluate(x, y, verbose=0)),
        "reloaded_predictions": ops.convert_to_numpy(reloaded(x)).tolist(),
        "reloaded_evaluate": float(reloaded.evaluate(x, y, verbose=0)),
        "reloaded_loss_config": reloaded.loss.get_config(),
        "path": path,
    }


def outputs(output_dir=None):
    """{loss name: values, gradients, fit history (and save / load results)} on the current backend.

    With `output_dir`, each fitted model is also saved there and loaded back.
    """
    labels, probs, logits = loss_helpers.random_batch(num_classes=NUM_CLASSES)
    results = {"backend": keras.backend.backend(), "losses": {}}
    for name in sorted(loss_helpers.EVERY_LOSS):
        record = {}
        for from_logits, y_pred in ((False, probs), (True, logits)):
            loss = loss_helpers.make_loss(name, from_logits=from_logits, reduction=None)
            key = "logits" if from_logits else "probabilities"
            values, grads = value_and_gradient(loss, labels, y_pred)
            record[f"values_from_{key}"], record[f"gradient_from_{key}"] = values.tolist(), grads.tolist()
        model, record["history"] = fit(name)
        if output_dir:
            record.update(save_and_reload(model, os.path.join(output_dir, f"{name}_{results['backend']}.keras")))
        results["losses"][name] = record
    return results


if __name__ == "__main__":
    keras.utils.set_random_seed(1234)
    json.dump(outputs(sys.argv[1]), sys.stdout)
