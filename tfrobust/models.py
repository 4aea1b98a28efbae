"""Small classification architectures for the task suite and the benchmark.

An architecture is data: a tuple of layer specs that both `build_model` (one
Keras model) and the population evaluator in `tfrobust.search` (one stacked
model per CMA-ES generation) read, so the two train exactly the same network.

Layer specs:
    ("flatten",)
    ("dense", units, activation)      activation: "relu" or None
    ("conv", filters, kernel_size, activation)   'same' padding, stride 1
    ("maxpool", pool_size)
    ("batchnorm",)                    keras.layers.BatchNormalization()
    ("relu",)
    ("global_avg_pool",)
    ("residual", specs)               x + specs(x) (a functional model)
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
    # The cnn with batch normalisation before each ReLU.
    "cnn_bn": (
        ("conv", 16, 3, None), ("batchnorm",), ("relu",),
        ("maxpool", 2),
        ("conv", 32, 3, None), ("batchnorm",), ("relu",),
        ("maxpool", 2),
        ("flatten",),
        ("dense", None, None),
    ),
    # One residual block (He et al., CVPR 2016) and global average pooling.
    "resnet_tiny": (
        ("conv", 16, 3, None), ("batchnorm",), ("relu",),
        ("residual", (("conv", 16, 3, None), ("batchnorm",), ("relu",), ("conv", 16, 3, None), ("batchnorm",))),
        ("relu",),
        ("maxpool", 2),
        ("conv", 32, 3, None), ("batchnorm",), ("relu",),
        ("global_avg_pool",),
        ("dense", None, None),
    ),
}


def layer_seed(seed, index, outer=None):
    """Initialiser seed of spec `index` (inside the residual block at spec `outer`, if any)."""
    if seed is None:
        return None
    return seed + index if outer is None else seed + 1000 * (outer + 1) + index


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
    if any(spec[0] == "conv" for spec in specs) and len(input_shape) == 1:
        raise ValueError(f"Architecture {name!r} needs image inputs (H, W, C); got shape {input_shape}.")
    layers = [keras.Input(tuple(input_shape))] + _layers(specs, num_classes, seed)
    if output == "softmax":
        # float32 output keeps the loss numerics in float32 under mixed precision.
        layers.append(keras.layers.Activation("softmax", dtype="float32"))
    if not any(spec[0] == "residual" for spec in specs):
        return keras.Sequential(layers, name=name)
    x = layers[0]
    for layer in layers[1:]:
        x = layer(x) if not isinstance(layer, list) else keras.layers.Add()([x, _chain(layer, x)])
    return keras.Model(layers[0], x, name=name)


def _chain(layers, x):
    for layer in layers:
        x = layer(x)
    return x


def _layers(specs, num_classes, seed, outer=None):
    """Keras layers of `specs`; a residual block becomes the list of its inner layers."""
    layers = []
    for index, spec in enumerate(specs):
        kernel_init = keras.initializers.GlorotUniform(seed=layer_seed(seed, index, outer))
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
        elif kind == "batchnorm":
            layers.append(keras.layers.BatchNormalization())
        elif kind == "relu":
            layers.append(keras.layers.Activation("relu"))
        elif kind == "global_avg_pool":
            layers.append(keras.layers.GlobalAveragePooling2D())
        elif kind == "residual":
            layers.append(_layers(spec[1], num_classes, seed, outer=index))
        else:  # pragma: no cover - guarded by the ARCHITECTURES table
            raise ValueError(f"Unknown layer spec {spec!r}.")
    return layers


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
    return _flops(architecture(name), [height, width, channels, features], num_classes, first=True)


def _flops(specs, shape, num_classes, first):
    """Training FLOPs of `specs` on `shape = [H, W, C, features]` (updated in place)."""
    total = 0
    for spec in specs:
        factor = 2 if first and not total else 3  # the first layer with weights has no input gradient
        if spec[0] == "conv":
            filters, kernel = spec[1], spec[2]
            total += factor * 2 * shape[0] * shape[1] * kernel * kernel * shape[2] * filters
            shape[2] = filters
            shape[3] = shape[0] * shape[1] * shape[2]
        elif spec[0] == "maxpool":
            shape[0], shape[1] = shape[0] // spec[1], shape[1] // spec[1]
            shape[3] = shape[0] * shape[1] * shape[2]
        elif spec[0] == "global_avg_pool":
            shape[0] = shape[1] = 1
            shape[3] = shape[2]
        elif spec[0] == "residual":
            total += _flops(spec[1], shape, num_classes, first=False)
        elif spec[0] == "dense":
            units = spec[1] or num_classes
            total += factor * 2 * shape[3] * units
            shape[3] = units
    return total
