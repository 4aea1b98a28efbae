"""Test-session setup: quiet logs, two logical CPU devices, deterministic seeds.

The CPU is split into two logical devices before TensorFlow initialises, so
that `tf.distribute.MirroredStrategy` can be tested without GPUs (the way
Keras tests it). Tests that do not ask for a strategy run on the first one.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite runs on TensorFlow (tf.distribute, GradientTape, graphs) whatever the shell says;
# tests/backends_test.py runs the losses on JAX in a subprocess of its own.
os.environ["KERAS_BACKEND"] = "tensorflow"

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(autouse=True)
def _seed():
    import keras

    keras.utils.set_random_seed(1234)
    yield
