"""Every loss gives the same values, gradients and training on the JAX backend as on TensorFlow,
and a model compiled with it saves and loads there (and the JAX-saved file loads here).

Keras fixes its backend at import, so the JAX side runs once, for all losses, in a subprocess
(`tests/loss_backend_outputs.py` under KERAS_BACKEND=jax) that prints its numbers as JSON; it
runs while this process computes the TensorFlow numbers. jax[cpu] is part of the [test] extra:
a missing jax fails these tests, it does not skip them.

Tolerances: both backends compute the same float32 formulas, in a different order of
operations (XLA / Eigen fusion, TF's log-softmax versus JAX's), so values and gradients agree
to a few float32 ulps: rtol 1e-5 with atol 1e-6 for entries near 0. The inputs keep every
probability far above the clip at EPSILON, where the one real difference lies (inside TF
graphs a softmax output is read from its logits; JAX clips the probabilities). Two epochs of
SGD compound the per-step rounding a little: the loss histories get rtol 1e-4.
"""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import loss_backend_outputs
from tests import loss_helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOSSES = sorted(loss_helpers.EVERY_LOSS)
# The JAX side takes about 40 s of CPU (imports, then compiling a train and a test step per loss).
JAX_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def both_backends(tmp_path_factory):
    """(TensorFlow outputs computed here, JAX outputs from the subprocess)."""
    output_dir = tmp_path_factory.mktemp("jax_models")
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.loss_backend_outputs", str(output_dir)],
        cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        tensorflow = loss_backend_outputs.outputs()
        stdout, stderr = worker.communicate(timeout=JAX_TIMEOUT_SECONDS)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, f"the JAX-backend run failed (is jax[cpu] installed?):\n{stderr[-4000:]}"
    jax = json.loads(stdout)
    assert tensorflow["backend"] == "tensorflow" and jax["backend"] == "jax"
    assert sorted(jax["losses"]) == LOSSES
    return tensorflow["losses"], jax["losses"]


@pytest.mark.parametrize("name", LOSSES)
def test_values_and_gradients_match_tensorflow(both_backends, name):
    tensorflow, jax = (outputs[name] for outputs in both_backends)
    for key in ("values_from_probabilities", "values_from_logits", "gradient_from_probabilities",
                "gradient_from_logits"):
        assert np.all(np.isfinite(tensorflow[key])), key
        np.testing.assert_allclose(jax[key], tensorflow[key], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {key}")
    # The gradients are not all zero: the comparison is not between two constants.
    assert np.abs(tensorflow["gradient_from_logits"]).max() > 1e-3


@pytest.mark.parametrize("name", LOSSES)
def test_fit_matches_tensorflow(both_backends, name):
    tensorflow, jax = (outputs[name] for outputs in both_backends)
    assert len(jax["history"]) == 2 and np.all(np.isfinite(jax["history"]))
    np.testing.assert_allclose(jax["history"], tensorflow["history"], rtol=1e-4, err_msg=name)
    # Training moved the model: the second epoch's loss differs from the first.
    assert tensorflow["history"][1] != tensorflow["history"][0]


@pytest.mark.parametrize("name", LOSSES)
def test_save_and_load_on_jax_and_across_backends(both_backends, name):
    jax = both_backends[1][name]
    # On JAX: the reloaded model predicts and evaluates exactly as the saved one.
    np.testing.assert_array_equal(jax["reloaded_predictions"], jax["predictions"])
    assert jax["reloaded_evaluate"] == pytest.approx(jax["evaluate"], rel=1e-6)
    assert jax["reloaded_loss_config"] == loss_helpers.make_loss(name).get_config()
    # The JAX-saved file loads here, on TensorFlow, with the same loss and the same predictions.
    reloaded = keras.models.load_model(jax["path"])
    assert reloaded.loss.get_config() == loss_helpers.make_loss(name).get_config()
    x, y = loss_backend_outputs.fit_data()
    np.testing.assert_allclose(reloaded(x).numpy(), jax["predictions"], rtol=1e-5, atol=1e-7)
