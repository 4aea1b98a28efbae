"""Population models: P copies of one architecture trained side by side in one graph.

Search-only machinery: the vectorised evaluator of `tfrobust.search` trains a
CMA-ES generation with it; users train their own models with `tfrobust.models`.

A CMA-ES generation trains one small model per candidate loss. Trained one
`model.fit` at a time, nearly all the time goes to per-model overhead
(building, tracing, compiling, Python dispatch). Here the P models become one
model whose weights carry a leading population axis: a dense layer is an
`einsum` over (population, in, out) kernels, a convolution whichever of the
implementations in `_population_conv` was measured fastest for its shape. The model maps a batch to `(batch, population,
classes)`, and `PopulationTaylorLoss` sums the members' per-example losses.
Because the members' parameters are disjoint, the gradient of the sum with
respect to member m's weights is exactly the gradient of member m's own loss,
and an element-wise optimiser (SGD, momentum, Adam, RMSprop) gives member m
exactly the update it would get trained alone.

Memory grows linearly in the population size P: weights, optimiser slots and
gradients are P times those of one model, and activations are P times those
of one model for the same batch (the input batch itself is shared).
"""

import keras
import numpy as np
from keras import ops

from tfrobust import models
from tfrobust.search import _population_conv


class PopulationDense(keras.layers.Layer):
    """Dense layer with one kernel per population member.

    Input `(batch, features)` (shared by all members: the first layer) or
    `(batch, population, features)`; output `(batch, population, units)`.
    """

    def __init__(self, population_size, units, activation=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.population_size = population_size
        self.units = units
        self.activation = keras.activations.get(activation)
        self.seed = seed

    def build(self, input_shape):
        features = input_shape[-1]
        self.shared_input = len(input_shape) == 2
        self.kernel = self.add_weight(
            shape=(self.population_size, features, self.units),
            initializer=_stacked_initializer(keras.initializers.GlorotUniform(self.seed), self.population_size),
            name="kernel",
        )
        self.bias = self.add_weight(shape=(self.population_size, self.units), initializer="zeros", name="bias")

    def call(self, inputs):
        if self.shared_input:
            outputs = ops.einsum("bi,pio->bpo", inputs, self.kernel)
        else:
            outputs = ops.einsum("bpi,pio->bpo", inputs, self.kernel)
        return self.activation(outputs + self.bias)


class PopulationConv2D(keras.layers.Layer):
    """'same'-padded, stride-1 convolution with one filter bank per member.

    Input `(batch, H, W, C)` (shared) or `(batch, H, W, population, C)`;
    output `(batch, H, W, population, filters)`. `implementation` is one of
    `_population_conv.IMPLEMENTATIONS` or "auto", the one measured fastest for
    the layer's shape (`_population_conv.choose`); all compute the same sums.
    With `pool_size`, the output is max-pooled ("first_max") before the bias
    and activation are applied, which equals pooling after them for a
    non-decreasing activation (see `build_population_model`'s "fused").
    """

    def __init__(self, population_size, filters, kernel_size, activation=None, seed=None, implementation="auto",
                 pool_size=None, **kwargs):
        super().__init__(**kwargs)
        self.population_size = population_size
        self.filters = filters
        self.kernel_size = kernel_size
        self.activation = keras.activations.get(activation)
        self.seed = seed
        self.implementation = implementation
        if pool_size and activation not in _MONOTONE_ACTIVATIONS:
            raise ValueError(f"pool_size pools before the bias and activation, which equals pooling after them only "
                             f"for a non-decreasing activation; the ones known here are "
                             f"{list(_MONOTONE_ACTIVATIONS)}, got {activation!r}. Use a PopulationMaxPool2D layer "
                             f"after this one instead.")
        self.pool_size = pool_size

    def build(self, input_shape):
        self.shared_input = len(input_shape) == 4
        if self.implementation == "auto":
            self.implementation = _population_conv.choose(self.shared_input, self.population_size)
        _population_conv.check_implementation(self.implementation, self.shared_input)
        channels = input_shape[-1]
        k = self.kernel_size
        self.kernel = self.add_weight(
            shape=(self.population_size, k, k, channels, self.filters),
            initializer=_stacked_initializer(keras.initializers.GlorotUniform(self.seed), self.population_size),
            name="kernel",
        )
        self.bias = self.add_weight(shape=(self.population_size, self.filters), initializer="zeros", name="bias")

    def call(self, inputs):
        outputs = _population_conv.population_conv(inputs, self.kernel, self.implementation)
        if self.pool_size:
            # max(relu(x + b)) = relu(max(x) + b): the bias and the activation
            # then touch a pool_size**2 times smaller tensor.
            outputs = max_pool(outputs, self.pool_size)
        return self.activation(outputs + self.bias)


class PopulationMaxPool2D(keras.layers.Layer):
    """2-D max pooling ('valid', stride = pool size) of `(batch, H, W, population, C)` inputs.

    `implementation`:
        "first_max" (default): each window becomes two axes of a reshape,
            which `ops.max` reduces; the gradient, written out, goes to the
            first maximum of each window in row-major order, as
            `MaxPooling2D`'s does, so a population member's gradients equal
            a single model's even where a window's maximum is tied.
        "reshape_max": the same reshape with reduce-max's own gradient,
            which shares the gradient among tied maxima and counts them in a
            second pass over the input (the population model's pooling up to
            revision 27a8a9a, kept so the searches recorded then repeat).
        "max_pool": `ops.max_pool` over the members' channels side by side.
            Under XLA on the CPU its gradient (select-and-scatter) dominated
            the cnn population's step: 27.4 ms against 74.0 ms per SGD step
            at population 16 and 255 ms against 402 ms at 64, on one core
            (`search.throughput --pool_variants`; figures in the README).
    The outputs are identical, and so are the gradients unless a window's
    maximum is tied.
    """

    IMPLEMENTATIONS = ("first_max", "reshape_max", "max_pool")

    def __init__(self, pool_size, implementation="first_max", **kwargs):
        super().__init__(**kwargs)
        if implementation not in self.IMPLEMENTATIONS:
            raise ValueError(f"Unknown pooling implementation {implementation!r}; choose one of "
                             f"{list(self.IMPLEMENTATIONS)}.")
        self.pool_size = pool_size
        self.implementation = implementation

    def call(self, inputs):
        return max_pool(inputs, self.pool_size, self.implementation)


def max_pool(inputs, size, implementation="first_max"):
    """'valid' max pooling of `(batch, H, W, population, C)` (see `PopulationMaxPool2D`)."""
    height, width, population, channels = inputs.shape[1:]
    if implementation == "max_pool":
        merged = ops.reshape(inputs, (-1, height, width, population * channels))
        pooled = ops.max_pool(merged, size, strides=size, padding="valid")
        return ops.reshape(pooled, (-1,) + tuple(pooled.shape[1:3]) + (population, channels))
    rows, columns = height // size, width // size
    cropped = inputs[:, : rows * size, : columns * size]
    shape = (-1, rows, size, columns, size, population, channels)
    if implementation == "reshape_max":
        return ops.max(ops.reshape(cropped, shape), axis=(2, 4))

    @ops.custom_gradient
    def first_max(cropped):
        windows = ops.reshape(cropped, shape)
        maxima = ops.max(windows, axis=(2, 4))

        def gradient(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            # Window offsets in row-major order; each takes the gradient if it
            # holds the maximum and no earlier offset did.
            taken = None
            rows_of_offsets = []
            for i in range(size):
                offsets = []
                for j in range(size):
                    hit = windows[:, :, i, :, j] == maxima
                    if taken is not None:
                        hit = ops.logical_and(hit, ops.logical_not(taken))
                    taken = hit if taken is None else ops.logical_or(taken, hit)
                    offsets.append(ops.where(hit, upstream, ops.zeros_like(upstream)))
                rows_of_offsets.append(ops.stack(offsets, axis=3))
            return ops.reshape(ops.stack(rows_of_offsets, axis=2), ops.shape(cropped))

        return maxima, gradient

    return first_max(cropped)


class PopulationBatchNormalization(keras.layers.Layer):
    """Batch normalisation with per-member statistics, scale and offset.

    Input `(batch, ..., population, channels)`; member m's channel c is
    normalised over the batch (and spatial) axes with its own batch moments
    in training and its own moving averages in inference, exactly as
    `keras.layers.BatchNormalization()` (axis -1) does for one model. Weights
    `gamma, beta, moving_mean, moving_variance` of shape `(population,
    channels)`, in Keras's order.
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.epsilon = epsilon

    def build(self, input_shape):
        shape = tuple(input_shape[-2:])
        self.gamma = self.add_weight(shape=shape, initializer="ones", name="gamma", autocast=False)
        self.beta = self.add_weight(shape=shape, initializer="zeros", name="beta", autocast=False)
        self.moving_mean = self.add_weight(shape=shape, initializer="zeros", name="moving_mean", trainable=False,
                                           autocast=False)
        self.moving_variance = self.add_weight(shape=shape, initializer="ones", name="moving_variance",
                                               trainable=False, autocast=False)

    def call(self, inputs, training=None):
        inputs = ops.cast(inputs, "float32")
        if training and self.trainable:
            mean, variance = ops.moments(inputs, axes=tuple(range(len(inputs.shape) - 2)))
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            mean, variance = self.moving_mean, self.moving_variance
        # The order of tf.nn.batch_normalization, which Keras's layer calls on TensorFlow.
        scale = ops.rsqrt(variance + self.epsilon) * self.gamma
        return ops.cast(inputs * scale + (self.beta - mean * scale), self.compute_dtype)


class PopulationGlobalAveragePooling2D(keras.layers.Layer):
    """`(batch, H, W, population, C)` to `(batch, population, C)`: each member's spatial mean."""

    def call(self, inputs):
        return ops.mean(inputs, axis=(1, 2))


class PopulationFlatten(keras.layers.Layer):
    """Flattens everything but the batch and population axes.

    `(batch, H, W, P, C)` becomes `(batch, P, H * W * C)` in the same element
    order as `keras.layers.Flatten` gives one member's `(batch, H, W, C)`.
    """

    def call(self, inputs):
        if len(inputs.shape) == 3:  # (batch, population, features): already flat
            return inputs
        moved = ops.moveaxis(inputs, 3, 1)
        return ops.reshape(moved, (-1, moved.shape[1], int(np.prod(moved.shape[2:]))))


def _stacked_initializer(initializer, population_size):
    """Initialises each member's slice as `initializer` would initialise one model."""

    def initialize(shape, dtype=None):
        member_shape = tuple(shape[1:])
        slices = [initializer(member_shape, dtype=dtype) for _ in range(population_size)]
        return ops.stack(slices)

    return initialize


# Activations that never decrease, so max pooling commutes with them (the architectures use these).
_MONOTONE_ACTIVATIONS = (None, "linear", "relu")

# Layer-spec kinds (see `tfrobust.models`) that have a population version here.
SUPPORTED_KINDS = ("flatten", "dense", "conv", "maxpool", "batchnorm", "relu", "global_avg_pool", "residual")


def supports(architecture):
    """Whether every layer of `architecture` (residual blocks included) has a population version."""

    def supported(specs):
        return all(spec[0] in SUPPORTED_KINDS and (spec[0] != "residual" or supported(spec[1])) for spec in specs)

    return supported(models.architecture(architecture))


POOLINGS = ("fused", "reshape_max", "max_pool")


def build_population_model(architecture, input_shape, num_classes, population_size, *, seed=None,
                           conv_implementation="auto", pooling="fused"):
    """A model mapping `(batch, *input_shape)` to probabilities `(batch, population, classes)`.

    `architecture` is a name in `tfrobust.models.ARCHITECTURES`; member m has
    the layout of `models.build_model(architecture, ...)`, and
    `member_weights` / `set_member_weights` convert between the two.
    `conv_implementation` is passed to every `PopulationConv2D` past the
    first (for benchmarks; "auto" picks the fastest per layer); the first,
    whose input is shared, always takes the one measured fastest for it.
    `pooling` is one of `POOLINGS`:
        "fused" (default): a max pooling right after a convolution (whose
            activation does not decrease) or a ReLU is applied before that
            layer's bias and activation, which then touch a pool_size**2
            times smaller tensor: max commutes with adding a per-channel
            bias and with a non-decreasing activation, so the outputs are
            the same, exactly. Gradients go to each window's first maximum
            (`PopulationMaxPool2D`'s "first_max"), as `MaxPooling2D`'s do.
        "reshape_max": the layers in the architecture's order with the
            "reshape_max" pooling: the population model before fused pooling
            (revision 27a8a9a and earlier). Equal to float rounding (the bias
            gradient is summed over a larger tensor) and tied maxima, so
            a search recorded before it repeats exactly only with this.
        "max_pool": the layers in order with `ops.max_pool` (for benchmarks).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; choose one of {list(POOLINGS)}.")
    inputs = keras.Input(tuple(input_shape))
    x, _ = _apply(models.architecture(architecture), inputs, True, num_classes, population_size, seed,
                  (conv_implementation, pooling))
    outputs = keras.layers.Activation("softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"population_{architecture}")


def _apply(specs, x, shared, num_classes, population_size, seed, implementations, outer=None):
    """Applies the population layers of `specs` to `x`; returns `(output, shared)`.

    `implementations` is `(conv_implementation, pooling)`.

    `shared` is True until the first layer with weights gives `x` a population axis.
    """
    pooled_early = set()  # indices of max-pooling specs already applied by the layer before them
    for index, spec in enumerate(specs):
        if index in pooled_early:
            continue
        layer_seed = models.layer_seed(seed, index, outer)
        kind = spec[0]
        pool_size = None  # the following max pooling's, when this layer applies it first ("fused")
        following = specs[index + 1] if index + 1 < len(specs) else None
        if (following is not None and following[0] == "maxpool" and implementations[1] == "fused"
                and ((kind == "relu" and not shared) or (kind == "conv" and spec[3] in _MONOTONE_ACTIVATIONS))):
            pool_size = following[1]
            pooled_early.add(index + 1)
        if kind in ("batchnorm", "residual") and shared:
            raise ValueError(f"A population model needs a layer with weights before {kind!r} (got {specs!r}).")
        if kind == "flatten":
            x = keras.layers.Flatten()(x) if shared else PopulationFlatten()(x)
        elif kind == "dense":
            x = PopulationDense(population_size, spec[1] or num_classes, spec[2], seed=layer_seed)(x)
            shared = False
        elif kind == "conv":
            x = PopulationConv2D(population_size, spec[1], spec[2], spec[3], seed=layer_seed,
                                 implementation="auto" if shared else implementations[0], pool_size=pool_size)(x)
            shared = False
        elif kind == "maxpool":
            pool_implementation = "first_max" if implementations[1] == "fused" else implementations[1]
            x = (keras.layers.MaxPooling2D(spec[1])(x) if shared
                 else PopulationMaxPool2D(spec[1], implementation=pool_implementation)(x))
        elif kind == "batchnorm":
            x = PopulationBatchNormalization()(x)
        elif kind == "relu":
            if pool_size:
                x = PopulationMaxPool2D(pool_size)(x)
            x = keras.layers.Activation("relu")(x)
        elif kind == "global_avg_pool":
            x = keras.layers.GlobalAveragePooling2D()(x) if shared else PopulationGlobalAveragePooling2D()(x)
        elif kind == "residual":
            # Member m's slice of x + f(x) is its own x + f(x): Add works on the stacked tensors as they are.
            inner, _ = _apply(spec[1], x, False, num_classes, population_size, seed, implementations, index)
            x = keras.layers.Add()([x, inner])
    return x, shared


def member_weights(population_model, member):
    """Member `member`'s weights, in the order `models.build_model(...).get_weights()` uses."""
    return [np.asarray(w)[member] for w in population_model.get_weights()]


def set_member_weights(population_model, member, weights):
    """Overwrites member `member` with a single model's weights (same order as above)."""
    stacked = population_model.get_weights()
    for value, new in zip(stacked, weights):
        value[member] = new
    population_model.set_weights(stacked)


def broadcast_member(population_model, weights):
    """Sets every member to the same single-model weights (shared initialisation)."""
    population_size = population_model.output.shape[1]
    population_model.set_weights([np.stack([w] * population_size) for w in weights])
