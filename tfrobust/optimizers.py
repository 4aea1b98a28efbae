"""The one place that turns an optimizer name into a Keras optimizer.

Search tasks, the benchmark and the training methods all name optimizers
with strings; this module gives every name one meaning.
"""

import math
import numbers

import keras

# Names with a meaning of tfrobust's own; any other name is passed to `keras.optimizers.get`.
MOMENTUM = 0.9
_NAMED = {
    "sgd": lambda learning_rate: keras.optimizers.SGD(learning_rate),
    "momentum": lambda learning_rate: keras.optimizers.SGD(learning_rate, momentum=MOMENTUM),
}
OPTIMIZERS = ("adam", "sgd", "momentum", "rmsprop", "adamw", "nadam", "adagrad")


def make_optimizer(name, learning_rate):
    """A new Keras optimizer from its name and learning rate.

    Args:
        name: "sgd" (plain SGD), "momentum" (SGD with Nesterov-free momentum
            0.9, the usual setting of the noisy-label papers), or any Keras
            optimizer name ("adam", "rmsprop", "adamw", ...).
        learning_rate: a positive number.

    Raises:
        ValueError: an unknown name or a learning rate that is not positive.
    """
    # numbers.Real admits numpy scalars; bool is an int in Python but never a learning rate.
    if (isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real)
            or not math.isfinite(learning_rate) or learning_rate <= 0):
        raise ValueError(f"The learning rate must be a positive finite number; got {learning_rate!r}.")
    learning_rate = float(learning_rate)
    key = str(name).lower()
    if key in _NAMED:
        return _NAMED[key](learning_rate)
    try:
        return keras.optimizers.get({"class_name": key, "config": {"learning_rate": learning_rate}})
    except ValueError:
        raise ValueError(
            f"Unknown optimizer {name!r}: use 'sgd', 'momentum' (SGD with momentum {MOMENTUM}) or a Keras "
            f"optimizer name such as {', '.join(repr(n) for n in OPTIMIZERS if n not in _NAMED)}."
        ) from None
