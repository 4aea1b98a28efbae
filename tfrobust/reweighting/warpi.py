"""WarPI: warped probabilistic inference (Sun, Guo, Wei, Han, Yin, Pattern Recognition 124:108467, 2022)."""

import keras
import numpy as np
import tensorflow as tf

from tfrobust.reweighting import _core
from tfrobust.reweighting._trainer import MetaNetTrainer

# Defaults of the official code (haolsun/WarPI, main.py and meta_net.py): a
# 2C-100-100 tanh meta-net trained by Adam, lr 3e-4, and 3 Monte-Carlo
# samples of the rectifying vector per example (`--sample_number 3`; the
# repository's README runs it with 1).
DEFAULT_SAMPLES = 3
DEFAULT_HIDDEN_UNITS = 100
DEFAULT_META_LEARNING_RATE = 3e-4

# Streams of the sampling noise: the virtual step and the real step draw
# independent epsilons, as the official code draws fresh ones for each.
_VIRTUAL_NOISE, _REAL_NOISE = 0, 1


def build_rectifier_net(num_classes, hidden_units=DEFAULT_HIDDEN_UNITS, seed=None, name="warpi_meta_net"):
    """The WarPI meta-net: [logits (n, C), labels (n,)] -> [mu (n, C), log sigma^2 (n, C)].

    The label enters through a learned C-dimensional embedding, concatenated
    with the (detached) logits and fed to two tanh layers of `hidden_units`,
    then to two linear heads (Sun et al., 2022, Sec. 3; `wpi` in the official
    meta_net.py). Hidden and mean kernels are Glorot-normal with zero biases
    as in the official code, the embedding is N(0, 1) as PyTorch's; every
    initializer is seeded by `seed` when given. The trainer draws
    r = sigmoid(mu + sigma * eps) itself, so the net is deterministic and
    saves like any Keras model.
    """
    def offset(k):
        return None if seed is None else seed + k

    logits = keras.Input((num_classes,), name="logits")
    labels = keras.Input((), dtype="int32", name="labels")
    embedded = keras.layers.Embedding(
        num_classes, num_classes, embeddings_initializer=keras.initializers.RandomNormal(0.0, 1.0, seed=offset(0)),
        name="label_embedding",
    )(labels)
    hidden = keras.layers.Concatenate()([logits, embedded])
    for index in range(2):
        hidden = keras.layers.Dense(
            hidden_units, activation="tanh", kernel_initializer=keras.initializers.GlorotNormal(offset(1 + index)),
            name=f"hidden_{index}",
        )(hidden)
    mean = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotNormal(offset(3)),
                              name="mean")(hidden)
    log_variance = keras.layers.Dense(num_classes, kernel_initializer=keras.initializers.GlorotUniform(offset(4)),
                                      name="log_variance")(hidden)
    return keras.Model([logits, labels], [mean, log_variance], name=name)


class LogitView:
    """The logits z of a Sequential or functional classifier, and its output as a function of z.

    A model that ends in `Dense(C, activation="softmax")`, a `Softmax()` or
    an `Activation("softmax")` layer outputs softmax(z): the view computes z
    from the layers below (for the Dense, its kernel and bias applied to its
    input), and `output_of(z)` is softmax(z). A model whose last layer is a
    linear `Dense` outputs z itself. Anything else is refused with a message
    saying what to change, because WarPI rescales z, not probabilities.
    """

    def __init__(self, model, owner):
        how = (
            "Give it a Sequential or functional classifier whose last layer is Dense(C, activation='softmax'), "
            "Softmax() or Activation('softmax') (or a linear Dense, for a model that outputs logits)."
        )
        try:
            outputs = model.outputs
        except (AttributeError, ValueError):
            outputs = None
        if not outputs or not model.layers:
            raise ValueError(f"{owner} needs the classifier's logits and cannot see them in {type(model).__name__} "
                             f"{model.name!r} (a subclassed model has no layer graph to read). {how}")
        last = model.layers[-1]
        if len(outputs) != 1 or _output_of(last) is not outputs[0]:
            raise ValueError(f"{owner} needs one (batch, classes) output produced by the model's last layer; "
                             f"{model.name!r} has {len(outputs)} outputs or ends elsewhere than {last.name!r}. {how}")
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.num_classes = int(outputs[0].shape[-1])
        self._last = last
        activation = getattr(last, "activation", None)
        if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and activation is keras.activations.softmax
        ):
            if isinstance(last, keras.layers.Softmax) and last.axis not in (-1, len(outputs[0].shape) - 1):
                raise ValueError(f"{owner}: the final Softmax of {model.name!r} normalises axis {last.axis}, not the "
                                 f"class axis. {how}")
            self._below = keras.Model(inputs, last.input)
            self.kind = "softmax"
        elif type(last) is keras.layers.Dense and activation in (keras.activations.softmax, keras.activations.linear):
            if last.lora_enabled or last.dtype_policy.quantization_mode is not None:
                raise ValueError(f"{owner}: the final Dense {last.name!r} is LoRA-enabled or quantized; its logits "
                                 f"cannot be read. {how}")
            self._below = keras.Model(inputs, last.input)
            self.kind = "dense_softmax" if activation is keras.activations.softmax else "logits"
        else:
            name = getattr(activation, "__name__", None)
            raise ValueError(
                f"{owner} cannot read logits from {model.name!r}: its last layer {last.name!r} is a "
                f"{type(last).__name__}" + (f" with activation {name!r}" if name else "") + f". {how}"
            )

    def logits_of(self, x, training):
        """z for the inputs `x` (call it inside `_core.stateless_run` for a look-ahead)."""
        below = self._below(x, training=training)
        if self.kind == "softmax":
            return below
        logits = keras.ops.matmul(below, self._last.kernel)
        return logits + self._last.bias if self._last.use_bias else logits

    def output_of(self, logits):
        """What the model outputs for logits z: softmax(z), or z for a model that outputs logits."""
        return logits if self.kind == "logits" else keras.activations.softmax(logits)


def _output_of(layer):
    try:
        return layer.output
    except (AttributeError, ValueError):
        return None


@keras.saving.register_keras_serializable(package="tfrobust")
class WarPI(MetaNetTrainer):
    """WarPI: a probabilistic meta-net learns to rescale each example's logits (Sun et al., 2022).

    For a noisy example with logits z = f(x; theta) in R^C and label y, the
    meta-net maps [stopgrad(z), embed(y)] to (mu, log sigma^2) in R^C and
    rectifying vectors r_s = sigmoid(mu + sigma * eps_s), eps_s ~ N(0, I),
    s = 1..S. The example's loss is the Monte-Carlo average
    l_i = (1/S) sum_s loss(y_i, softmax(r_s * z_i)), an element-wise warp of
    the logits rather than a scalar weight (Sun et al., Pattern Recognition
    2022, Eqs. 5-8). Each step, with alpha the classifier optimizer's current
    learning rate (the bilevel loop of Meta-Weight-Net):

        1. theta_hat = theta - alpha grad_theta (1/n) sum_i l_i(theta; Phi)
        2. Phi <- meta-optimizer step on L_meta(theta_hat(Phi)), the plain
           base loss of the classifier on the clean meta batch
        3. theta <- optimizer step on (1/n) sum_i l_i(theta; Phi_new), r detached

    The meta-net acts nonlinearly inside the loss, so step 2 differentiates
    through the virtual step with nested tapes (`_core.nested_lookahead_meta_gradient`).
    The noise eps is stateless: drawn from (seed, step), independently for
    steps 1 and 3 and for each replica, so a run is reproducible. The noisy
    forward at theta serves steps 1 and 3 and is the only one whose
    BatchNormalization statistics are kept. The official code has no KL or
    prior term, and neither does this; its authors' follow-up (VRI, IJCV
    2024) reports that such probabilistic meta-models can collapse sigma.

    The classifier must expose its logits (see `LogitView`): a Sequential or
    functional model ending in Dense(C, activation="softmax"), Softmax() or
    Activation("softmax"), or in a linear Dense. The base loss receives
    softmax(r * z) (r * z for a model that outputs logits), i.e. what the
    model itself would output. Labels are integer class indices. TensorFlow
    backend only; the user's `model` is trained in place.

    Args:
        model, meta_data, loss, meta_batch_size, seed: see `ReweightingTrainer`
            (the default meta-net is seeded with `seed`, and so is the noise).
        meta_net: a Keras model [logits (n, C), labels (n,)] -> [mu, log sigma^2],
            each (n, C); default `build_rectifier_net(C, seed=seed)`.
        meta_optimizer: optimizer of the meta-net (default Adam, 3e-4).
        samples: S, the Monte-Carlo samples of r per example (default 3, the
            official code's; its README uses 1).

    Example:
        ```python
        meta, data = datasets.load("mnist5k", noise="symmetric:0.4").meta_split(per_class=10)
        trainer = reweighting.WarPI(model, meta_data=meta)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
        trainer.fit(data.train_dataset(100), epochs=40)
        ```
    """

    def __init__(self, model, meta_data=None, loss=None, meta_net=None, meta_optimizer=None, samples=DEFAULT_SAMPLES,
                 meta_batch_size=_core.DEFAULT_META_BATCH_SIZE, seed=0, **kwargs):
        super().__init__(model, meta_data=meta_data, loss=loss, meta_batch_size=meta_batch_size, seed=seed, **kwargs)
        self.logit_view = LogitView(self.model, "WarPI")
        num_classes = self.logit_view.num_classes
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise ValueError(f"WarPI argument `samples` must be a positive integer; got {samples!r}.")
        self.samples = int(samples)
        if meta_net is None:
            meta_net = build_rectifier_net(num_classes, seed=self.seed)
        self._set_meta_net(meta_net, meta_optimizer, DEFAULT_META_LEARNING_RATE)
        self._check_meta_net(
            [np.zeros((2, num_classes), keras.backend.floatx()), np.zeros((2,), "int32")],
            [(2, num_classes), (2, num_classes)],
            f"[logits (n, C), labels (n,)] to [mu, log sigma^2], each (n, C), with C = {num_classes}",
        )

    # ---- the rectified loss -----------------------------------------------------------------

    def _labels(self, y):
        if len(y.shape) == 2 and y.shape[-1] == 1:
            y = y[:, 0]
        if len(y.shape) != 1:
            raise ValueError(f"WarPI takes integer class labels of shape (n,) or (n, 1); got shape {tuple(y.shape)}.")
        return tf.cast(y, "int32")

    def rectifying_vectors(self, logits, y, noise_seed):
        """r_s = sigmoid(mu + sigma * eps_s) for detached `logits` (n, C): shape (S, n, C).

        `noise_seed` is a stateless-random seed (a shape-(2,) integer tensor).
        """
        mean, log_variance = self.meta_net([tf.stop_gradient(logits), self._labels(y)])
        noise = tf.random.stateless_normal(
            tf.concat([[self.samples], tf.shape(mean)], axis=0), seed=noise_seed, dtype=mean.dtype
        )
        return tf.sigmoid(mean[tf.newaxis] + tf.exp(0.5 * log_variance)[tf.newaxis] * noise)

    def rectified_losses(self, y, logits, rectifiers):
        """l_i = (1/S) sum_s loss(y_i, output(r_s * z_i)), shape (n,)."""
        num_classes = self.logit_view.num_classes
        warped = tf.reshape(rectifiers * logits[tf.newaxis], [-1, num_classes])
        labels = tf.tile(self._labels(y), [self.samples])
        values = _core.per_example_loss(self.base_loss, labels, self.logit_view.output_of(warped), "WarPI")
        return tf.reduce_mean(tf.reshape(values, [self.samples, -1]), axis=0)

    # ---- the bilevel step -------------------------------------------------------------------

    def _virtual_objective(self, x, y, trainable, non_trainable, tape, forward, step):
        """Step 1's objective (1/n) sum_i l_i(theta; Phi), with noise stream 0 of `step`."""
        with tape:
            tape.watch(trainable)
            logits, new_non_trainable, losses, _ = _core.stateless_run(
                self.model, trainable, non_trainable, lambda: self.logit_view.logits_of(x, training=True)
            )
            regularization = _core.regularization_share(losses, logits.dtype)
        rectifiers = self.rectifying_vectors(logits, y, _core.step_seed(self.seed, step, _VIRTUAL_NOISE))
        per_example = self.rectified_losses(y, logits, rectifiers)
        batch_size = _core.all_reduce_sum(tf.cast(tf.shape(per_example)[0], per_example.dtype))
        forward.update(logits=logits, non_trainable=new_non_trainable, regularization=regularization,
                       batch_size=batch_size)
        return tf.reduce_sum(per_example) / batch_size

    def _real_step(self, x, y, recorded, step):
        tape, trainable, forward = recorded
        logits = forward["logits"]
        # Step 3: r from the updated meta-net, detached; the gradient flows through z.
        rectifiers = tf.stop_gradient(self.rectifying_vectors(logits, y, _core.step_seed(self.seed, step, _REAL_NOISE)))
        with tape:
            losses = self.rectified_losses(y, logits, rectifiers)
        coefficients = tf.ones_like(losses) / forward["batch_size"]
        return self._apply_weighted_update(
            tape, trainable, losses, coefficients, forward["regularization"], forward["non_trainable"], x, y,
            self.logit_view.output_of(logits),
        )

    def get_config(self):
        config = super().get_config()
        config.update(samples=self.samples)
        return config
