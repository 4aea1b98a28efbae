"""Small classification architectures for the task suite and the benchmark.

An architecture is data: a tuple of layer specs that both `build_model` (one
Keras model) and the population evaluator in `tfrobust.search` (one stacked
model per CMA-ES generation) read, so the two train exactly the same network.

Layer specs:
    ("flatten",)
    ("dense", units, activation)      activation: "relu" or None
    ("conv", filters, kernel_size, activation)   'same' padding, stride 1
    ("maxpool", pool_size)
"""

import keras

ARCHITECTURES = {
    # Softmax regression: the smallest task model.
    "linear": (("flatten",), ("dense", None, None)),
    # One hidden layer of 128 units.
    "mlp": (("flatten",), ("dense", 128, "relu"), ("dense", None, None)),
    # Two hidden layers.
    "mlp2": (("flatten",), ("dense", 256, "relu"), ("dense", 128, "relu"), ("dense", None, None)),
    # Two 3x3 convolutions with 2x2 max pooling, then a linear classifier.
    "cnn": (
        ("conv", 16, 3, "relu"),
        ("maxpool", 2),
        ("conv", 32, 3, "relu"),
        ("maxpool", 2),
        ("flatten",),
        ("dense", None, None),
    ),
}


def architecture(name):
    """The layer specs of architecture `name` (the last dense layer has `units=None`:
    it gets the number of classes)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}.")
    return ARCHITECTURES[name]


def build_model(name, input_shape, num_classes, *, output="softmax", seed=None):
    """A `keras.Sequential` model for architecture `name`.

    Args:
        name: a key of `ARCHITECTURES`.
        input_shape: shape of one example, e.g. `(8, 8, 1)`.
        num_classes: width of the output layer.
        output: "softmax" for probabilities (the losses' default,
            `from_logits=False`) or "logits".
        seed: seed for the weight initialisers; equal seeds give equal models.
    """
    if output not in ("softmax", "logits"):
        raise ValueError(f"output must be 'softmax' or 'logits'; got {output!r}.")
    specs = architecture(name)
    layers = [keras.Input(tuple(input_shape))]
    if any(spec[0] == "conv" for spec in specs) and len(input_shape) == 1:
        raise ValueError(f"Architecture {name!r} needs image inputs (H, W, C); got shape {input_shape}.")
    for index, spec in enumerate(specs):
        kernel_init = keras.initializers.GlorotUniform(seed=None if seed is None else seed + index)
        kind = spec[0]
        if kind == "flatten":
            layers.append(keras.layers.Flatten())
        elif kind == "dense":
            units = spec[1] or num_classes
            layers.append(keras.layers.Dense(units, activation=spec[2], kernel_initializer=kernel_init))
        elif kind == "conv":
            layers.append(
                keras.layers.Conv2D(
                    spec[1], spec[2], padding="same", activation=spec[3], kernel_initializer=kernel_init
                )
            )
        elif kind == "maxpool":
            layers.append(keras.layers.MaxPooling2D(spec[1]))
        else:  # pragma: no cover - guarded by the ARCHITECTURES table
            raise ValueError(f"Unknown layer spec {spec!r}.")
    if output == "softmax":
        # float32 output keeps the loss numerics in float32 under mixed precision.
        layers.append(keras.layers.Activation("softmax", dtype="float32"))
    return keras.Sequential(layers, name=name)


def training_flops_per_example(name, input_shape, num_classes):
    """FLOPs (2 per multiply-add) of one training step, per example.

    Counts the dense and convolution matmuls only (activations, pooling and
    the optimiser are lower order). The backward pass computes gradients with
    respect to both inputs and weights, each as costly as the forward pass,
    so a layer costs 3 x its forward FLOPs, except the first layer with
    weights: nothing needs the gradient of the input, so it costs 2 x.
    """
    shape = list(input_shape) if len(input_shape) == 3 else [1, 1, None]
    height, width, channels = shape
    features = 1
    for size in input_shape:
        features *= size
    total = 0
    for spec in architecture(name):
        factor = 3 if total else 2  # the first layer with weights has no input gradient
        if spec[0] == "conv":
            filters, kernel = spec[1], spec[2]
            total += factor * 2 * height * width * kernel * kernel * channels * filters
            channels = filters
            features = height * width * channels
        elif spec[0] == "maxpool":
            height, width = height // spec[1], width // spec[1]
            features = height * width * channels
        elif spec[0] == "dense":
            units = spec[1] or num_classes
            total += factor * 2 * features * units
            features = units
    return total
