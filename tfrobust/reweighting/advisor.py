"""The advisor network (Ricci, Uricchio, Del Bimbo, "Learning advisor networks for noisy image
classification", ICIAP 2021, LNCS pp. 442-453; arXiv 2211.04177), called MFRW in its code."""

import warnings

import keras
import numpy as np
import tensorflow as tf

from tfrobust.reweighting import _core
from tfrobust.reweighting._trainer import MetaNetTrainer

# Defaults of the official code (z3n0e/MFRW, clothing/advisor.py and train.py):
# 100 hidden units on each branch, Adam with lr 1e-4 on the advisor.
DEFAULT_HIDDEN_UNITS = 100
DEFAULT_META_LEARNING_RATE = 1e-4


def build_advisor_net(feature_dim, hidden_units=DEFAULT_HIDDEN_UNITS, seed=None, name="advisor"):
    """A(feat, l) = sigmoid(W_o [relu(W_f feat), relu(W_l l)]): [features (n, d), losses (n, 1)] -> (n, d).

    The advisor of Ricci et al. (ICIAP 2021, Sec. 3): a feature branch and a
    loss branch of `hidden_units` each, concatenated, and a sigmoid layer
    giving one factor in (0, 1) per feature. Kernels are Glorot-uniform
    (seeded by `seed` when given) with zero biases, so a fresh advisor gives
    factors near 0.5.
    """
    def kernel(offset):
        return keras.initializers.GlorotUniform(None if seed is None else seed + offset)

    features = keras.Input((feature_dim,), name="features")
    losses = keras.Input((1,), name="losses")
    feature_branch = keras.layers.Dense(hidden_units, activation="relu", kernel_initializer=kernel(0),
                                        name="feature_branch")(features)
    loss_branch = keras.layers.Dense(hidden_units, activation="relu", kernel_initializer=kernel(1),
                                     name="loss_branch")(losses)
    joined = keras.layers.Concatenate()([feature_branch, loss_branch])
    advice = keras.layers.Dense(feature_dim, activation="sigmoid", kernel_initializer=kernel(2), name="advice")(joined)
    return keras.Model([features, losses], advice, name=name)


class FeatureSplit:
    """A classifier split after its layer `split` into a feature extractor f and a head h (sharing its layers).

    A Sequential model is cut in its layer list; a functional one becomes
    `Model(inputs, layer.output)` and `Model(layer.output, outputs)`. The
    split is refused, with the reason, when the layer does not exist, is
    the last one, gives features that are not a flat (batch, d) vector, or
    when a connection bypasses it (a skip connection across the cut), so
    that f and h would not partition the model's variables.
    """

    def __init__(self, model, split, owner):
        how = ("Pass split=<name of the layer whose output the head reads, a flat (batch, d) feature vector, e.g. "
               "after Flatten or GlobalAveragePooling2D>, or model=(feature_extractor, head) with split=None.")
        if not isinstance(split, str):
            raise ValueError(f"{owner} needs to know where to split the classifier; got split={split!r}. {how}")
        names = [layer.name for layer in model.layers]
        if split not in names:
            raise ValueError(f"{owner}: split point {split!r} is not a layer of {model.name!r}; its layers are "
                             f"{names}. {how}")
        index = names.index(split)
        if index == len(names) - 1:
            raise ValueError(f"{owner}: split point {split!r} is the last layer of {model.name!r}, which leaves no "
                             f"head to advise. {how}")
        if isinstance(model, keras.Sequential):
            self.feature_extractor = keras.Sequential(
                [keras.Input(model.inputs[0].shape[1:], dtype=model.inputs[0].dtype), *model.layers[: index + 1]]
            )
            feature_shape = self.feature_extractor.outputs[0].shape
            self.head = keras.Sequential([keras.Input(feature_shape[1:]), *model.layers[index + 1 :]])
        else:
            try:
                inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
                layer_output = model.get_layer(split).output
                self.feature_extractor = keras.Model(inputs, layer_output)
                self.head = keras.Model(layer_output, model.outputs[0])
            except (AttributeError, ValueError) as error:
                raise ValueError(
                    f"{owner}: cannot split {model.name!r} at {split!r} into a feature extractor and a head that "
                    f"reads only that layer's output (a subclassed model, a shared layer, or a connection that "
                    f"bypasses the split point?): {error} {how}"
                ) from None
            feature_shape = layer_output.shape
        if len(feature_shape) != 2 or feature_shape[-1] is None:
            raise ValueError(f"{owner}: split point {split!r} outputs shape {tuple(feature_shape)}; the advisor "
                             f"re-weights a flat (batch, d) feature vector. {how}")
        self.feature_dim = int(feature_shape[-1])
        front = {id(v) for v in self.feature_extractor.weights}
        back = {id(v) for v in self.head.weights}
        whole = {id(v) for v in model.weights}
        if front & back or front | back != whole:
            raise ValueError(f"{owner}: splitting {model.name!r} at {split!r} does not partition its weights "
                             f"(a layer is used on both sides, or outside both). {how}")
        head_norms = [layer.name for layer in _sublayers(self.head)
                      if isinstance(layer, keras.layers.BatchNormalization)]
        if head_norms:
            warnings.warn(
                f"{owner}: the head after split point {split!r} holds BatchNormalization {head_norms}. The advisor's "
                "meta-gradient differentiates the head's backward pass with respect to its (advised) input, and "
                "TensorFlow's batch moments (tf.nn.moments) stop the gradient of the mean inside the variance, "
                "which drops a second-order term: the meta-gradient is then approximate (same sign and order of "
                "magnitude, but off by 0.2% to 25% in entries measured on a toy model). Split after the last "
                "BatchNormalization (the paper's head is the final Dense) for an exact one.",
                stacklevel=3,
            )


@keras.saving.register_keras_serializable(package="tfrobust")
class AdvisorNetwork(MetaNetTrainer):
    """The advisor network: a meta-learned, per-example re-weighting of the classifier's features.

    The classifier is split into a feature extractor f and a head h. For a
    noisy example, the advisor A maps the detached features f(x) and the
    detached loss l = loss(y, h(f(x))) to factors a in (0, 1)^d, and the
    head is trained on f(x) * a: features are re-weighted, losses are not,
    so a mislabelled example still teaches the parts of its features that
    help (Ricci, Uricchio, Del Bimbo, ICIAP 2021). Each step, with alpha
    the classifier optimizer's current learning rate (the Meta-Weight-Net
    loop, as in the official code):

        1. (f, h)_hat = (f, h) - alpha grad (1/n) sum_i loss(y_i, h(f(x_i) * A(f(x_i), l_i)))
        2. A <- meta-optimizer step on the plain (unmasked) base loss of h_hat(f_hat(x)) on the clean meta batch
        3. (f, h) <- optimizer step on (1/n) sum_i loss(y_i, h(f(x_i) * a_i)), a_i from the updated A, detached

    Step 2 differentiates through the virtual step with nested tapes
    (`_core.nested_lookahead_meta_gradient`). The feature forward at theta
    serves steps 1 and 3; BatchNormalization statistics are kept from it
    (for f) and from step 3's head forward (for h), as in one plain step.
    At inference the classifier runs unadvised: the advisor needs the label.
    Split after the last BatchNormalization: TensorFlow's BatchNormalization
    has inexact second derivatives, so one in the head makes the advisor's
    meta-gradient approximate (the constructor warns).
    TensorFlow backend only; the user's layers are trained in place.

    Args:
        model: the classifier, a Sequential or functional `keras.Model`
            (with `split`), or a pair `(feature_extractor, head)` of Keras
            models (with `split=None`), which the trainer composes into a
            Sequential `trainer.model`.
        split: the name of the layer after which to split: its output, a
            flat `(batch, d)` vector, is what the advisor re-weights.
        meta_data, loss, meta_batch_size, seed: see `ReweightingTrainer`
            (the default advisor is seeded with `seed`).
        meta_net: the advisor, a Keras model [features (n, d), losses (n, 1)]
            -> (n, d); default `build_advisor_net(d, seed=seed)`.
        meta_optimizer: optimizer of the advisor (default Adam, 1e-4).

    Example:
        ```python
        trainer = reweighting.AdvisorNetwork(model, meta_data=meta, split="features")
        trainer.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), metrics=["accuracy"])
        trainer.fit(data.train_dataset(32), epochs=20)
        ```
    """

    def __init__(self, model, meta_data=None, split=None, loss=None, meta_net=None, meta_optimizer=None,
                 meta_batch_size=_core.DEFAULT_META_BATCH_SIZE, seed=0, **kwargs):
        if isinstance(model, (tuple, list)):
            model, split = _compose(model, split)
        super().__init__(model, meta_data=meta_data, loss=loss, meta_batch_size=meta_batch_size, seed=seed, **kwargs)
        self.split = split
        self.parts = FeatureSplit(self.model, split, "AdvisorNetwork")
        feature_dim = self.parts.feature_dim
        if meta_net is None:
            meta_net = build_advisor_net(feature_dim, seed=self.seed)
        self._set_meta_net(meta_net, meta_optimizer, DEFAULT_META_LEARNING_RATE)
        self._check_meta_net(
            [np.zeros((2, feature_dim), keras.backend.floatx()), np.zeros((2, 1), keras.backend.floatx())],
            [(2, feature_dim)],
            f"[features (n, d), losses (n, 1)] to factors (n, d), with d = {feature_dim} (the output size of "
            f"split point {split!r})",
        )

    def _advice(self, features, losses):
        """A(stopgrad(features), stopgrad(losses)), shape (n, d)."""
        return self.meta_net([tf.stop_gradient(features), tf.stop_gradient(losses)[:, tf.newaxis]])

    def _virtual_objective(self, x, y, trainable, non_trainable, tape, forward, step):
        """Step 1's objective (1/n) sum_i loss(y_i, h(f(x_i) * A(f(x_i), l_i)))."""
        owner = type(self).__name__
        with tape:
            tape.watch(trainable)
            features, state, _, feature_losses = _core.stateless_run(
                self.model, trainable, non_trainable, lambda: self.parts.feature_extractor(x, training=True)
            )
        # The advisor's loss input: the unadvised prediction at theta, detached;
        # this head forward's statistics are discarded.
        y_pred = _core.stateless_run(self.model, trainable, non_trainable,
                                     lambda: self.parts.head(features, training=True))[0]
        plain_losses = tf.stop_gradient(_core.per_example_loss(self.base_loss, y, y_pred, owner))
        advised = _core.stateless_run(
            self.model, trainable, non_trainable,
            lambda: self.parts.head(features * self._advice(features, plain_losses), training=True),
        )[0]
        losses = _core.per_example_loss(self.base_loss, y, advised, owner)
        batch_size = _core.all_reduce_sum(tf.cast(tf.shape(losses)[0], losses.dtype))
        forward.update(features=features, state=state, feature_losses=feature_losses, y_pred=y_pred,
                       plain_losses=plain_losses, batch_size=batch_size)
        return tf.reduce_sum(losses) / batch_size

    def _real_step(self, x, y, recorded, step):
        tape, trainable, forward = recorded
        features = forward["features"]
        advice = tf.stop_gradient(self._advice(features, forward["plain_losses"]))
        with tape:
            # Step 3 from the feature forward's state: f's statistics are kept
            # from it, h's from this advised head forward.
            advised, new_non_trainable, model_losses, _ = _core.stateless_run(
                self.model, trainable, forward["state"], lambda: self.parts.head(features * advice, training=True)
            )
            losses = _core.per_example_loss(self.base_loss, y, advised, type(self).__name__)
            regularization = _core.regularization_share(model_losses + forward["feature_losses"], losses.dtype)
        coefficients = tf.ones_like(losses) / forward["batch_size"]
        return self._apply_weighted_update(
            tape, trainable, losses, coefficients, regularization, new_non_trainable, x, y, forward["y_pred"]
        )

    def feature_weights(self, x, y):
        """The advisor's factors A(f(x), l) for the batch `(x, y)`, the model in inference mode (numpy (n, d))."""
        features = self.parts.feature_extractor(x, training=False)
        y_pred = self.parts.head(features, training=False)
        losses = _core.per_example_loss(self.base_loss, tf.convert_to_tensor(y), y_pred, type(self).__name__)
        return self._advice(features, losses).numpy()

    def get_config(self):
        config = super().get_config()
        config.update(split=self.split)
        return config


def _sublayers(model):
    """Every layer inside `model`, nested models opened."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _sublayers(layer)


def _compose(parts, split):
    """(Sequential [feature_extractor, head], the feature extractor's name) for model=(feature_extractor, head)."""
    if split is not None:
        raise ValueError("AdvisorNetwork: give either model=(feature_extractor, head) or a model and a split layer "
                         f"name, not both (got split={split!r} with a pair of models).")
    if len(parts) != 2 or not all(isinstance(part, keras.Model) for part in parts):
        raise ValueError("AdvisorNetwork: model=(feature_extractor, head) takes exactly two keras.Models; got "
                         f"{[type(part).__name__ for part in parts]}.")
    feature_extractor, head = parts
    try:
        input_spec = feature_extractor.inputs[0]
    except (AttributeError, IndexError, TypeError):
        raise ValueError("AdvisorNetwork: the feature extractor must be a built Sequential or functional model "
                         "(with a keras.Input), so that its input shape is known.") from None
    model = keras.Sequential([keras.Input(input_spec.shape[1:], dtype=input_spec.dtype), feature_extractor, head],
                             name=f"{feature_extractor.name}_{head.name}")
    return model, feature_extractor.name
