"""Layers for the training methods: the cosine classifier head of LDAM-DRW."""

import keras
from keras import ops

from tfrobust.losses import _base


@keras.saving.register_keras_serializable(package="tfrobust")
class CosineClassifier(keras.layers.Layer):
    """A linear classifier on unit vectors: output_j = <x / |x|, w_j / |w_j|>, in [-1, 1].

    The `NormedLinear` head of Cao et al. (LDAM-DRW, NeurIPS 2019): the
    features and each class's weight column are L2-normalised, so the
    outputs are cosine similarities with no bias. Feed them to
    `tfrobust.losses.LDAMLoss`, which subtracts the class margins and scales
    by s; at prediction time their argmax is the class. A zero feature
    vector gives zero outputs (the norms are floored at 1e-12, as
    `torch.nn.functional.normalize` does).

    Args:
        units: the number of classes.
        kernel_initializer: initialiser of the (features, units) weights.
            Defaults to `"glorot_uniform"` (the released code draws
            uniform(-1, 1) and renormalises; the scale cancels here).
    """

    def __init__(self, units, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = _base.checked_integer("CosineClassifier", "units", units, 1)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(input_shape[-1], self.units), initializer=self.kernel_initializer, name="kernel"
        )

    def call(self, inputs):
        features = inputs / ops.maximum(ops.norm(inputs, axis=-1, keepdims=True), 1e-12)
        kernel = ops.cast(self.kernel, features.dtype)
        kernel = kernel / ops.maximum(ops.norm(kernel, axis=0, keepdims=True), 1e-12)
        return ops.matmul(features, kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config
