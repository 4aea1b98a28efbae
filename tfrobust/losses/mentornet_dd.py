"""MentorNet-DD: a mentor network learnt on a clean-labelled subset, and the loss that lets it weigh a student.

The data-driven MentorNet of Jiang et al. (ICML 2018) learns which examples
to trust from a student trained on data whose labels are known to be right
or wrong. The workflow, all in Keras:

1. Train a student on a subset whose clean labels you know (with noisy
   labels on it, e.g. `noise.symmetric` applied to a clean subset), with a
   `MentorDataRecorder` callback: each epoch it records every example's loss
   under its noisy label and the training progress.
2. `recorder.training_data()` turns the records into mentor features
   [loss, loss - percentile, label, progress] and targets 1[noisy == clean];
   `train_mentor(features, targets)` fits a `MentorNet` to them. Save it
   with `mentor.save("mentor.keras")`; `keras.models.load_model` reads it back.
3. Train the real student with `MentorNetDD(mentor)` and `MentorNetSchedule`.
"""

import keras
import numpy as np
from keras import ops

from tfrobust.losses import _base
from tfrobust.losses import mentornet

FEATURES = ("loss", "loss_gap", "label", "progress")


@keras.saving.register_keras_serializable(package="tfrobust")
class MentorNet(keras.Model):
    """The mentor network of the released MentorNet code, as a Keras model.

    Input: features `(batch, 4)`: [loss, loss - moving percentile, label,
    progress in percent 0 .. 99]. Output: one logit per example; its sigmoid
    is the weight v in [0, 1].

    Architecture (`mentornet_nn` in google/mentornet): a bidirectional LSTM
    with one unit per direction over the sequence [(loss, loss gap)] (of
    length one, as in the released code; forget-gate bias 0), a trainable
    label embedding, a fixed random progress embedding of 100 rows, then a
    tanh layer of `hidden_units` and a linear output.

    Args:
        num_labels: rows of the label embedding. Defaults to `2`: the
            released code feeds label 0 for every example.
        label_embedding_size: defaults to `2`.
        epoch_embedding_size: defaults to `5`.
        hidden_units: defaults to `20`.
        seed: seed of the initialisers.
    """

    def __init__(self, num_labels=2, label_embedding_size=2, epoch_embedding_size=5, hidden_units=20, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_labels = _base.checked_integer("MentorNet", "num_labels", num_labels, 1)
        self.label_embedding_size = label_embedding_size
        self.epoch_embedding_size = epoch_embedding_size
        self.hidden_units = hidden_units
        self.seed = seed

        def initializer(kind, offset):
            return kind(seed=None if seed is None else seed + offset)

        self.loss_lstm = keras.layers.Bidirectional(
            keras.layers.LSTM(1, unit_forget_bias=False, kernel_initializer=initializer(keras.initializers.GlorotUniform, 0)),
            name="loss_lstm",
        )
        self.label_embedding = keras.layers.Embedding(
            self.num_labels, label_embedding_size, embeddings_initializer=initializer(keras.initializers.RandomUniform, 1),
            name="label_embedding",
        )
        self.progress_embedding = keras.layers.Embedding(
            mentornet.PROGRESS_STEPS, epoch_embedding_size,
            embeddings_initializer=initializer(keras.initializers.RandomNormal, 2), trainable=False,
            name="progress_embedding",
        )
        self.hidden = keras.layers.Dense(hidden_units, activation="tanh",
                                         kernel_initializer=initializer(keras.initializers.GlorotUniform, 3), name="hidden")
        self.logit = keras.layers.Dense(1, kernel_initializer=initializer(keras.initializers.GlorotUniform, 4), name="logit")

    def build(self, input_shape=None):
        shapes = ((self.loss_lstm, (None, 1, 2)), (self.label_embedding, (None,)), (self.progress_embedding, (None,)),
                  (self.hidden, (None, 2 + self.label_embedding_size + self.epoch_embedding_size)),
                  (self.logit, (None, self.hidden_units)))
        for layer, shape in shapes:
            if not layer.built:
                layer.build(shape)
        self.built = True

    def call(self, features):
        features = ops.convert_to_tensor(features, dtype="float32")
        loss_and_gap = ops.reshape(features[:, :2], (-1, 1, 2))
        labels = ops.cast(ops.clip(features[:, 2], 0, self.num_labels - 1), "int32")
        progress = ops.cast(ops.clip(features[:, 3], 0, mentornet.PROGRESS_STEPS - 1), "int32")
        joined = ops.concatenate(
            [self.loss_lstm(loss_and_gap), self.label_embedding(labels), self.progress_embedding(progress)], axis=-1
        )
        return ops.squeeze(self.logit(self.hidden(joined)), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(num_labels=self.num_labels, label_embedding_size=self.label_embedding_size,
                      epoch_embedding_size=self.epoch_embedding_size, hidden_units=self.hidden_units, seed=self.seed)
        return config


def mentor_training_data(losses, noisy_labels, clean_labels, progress, percentile=0.7, use_labels=False):
    """Mentor features and targets from a student's per-example losses.

    Args:
        losses: the student's loss of each record under its NOISY label, `(n,)`.
        noisy_labels, clean_labels: the labels of each record, `(n,)`.
        progress: training progress in percent (0 .. 99) when each record
            was taken, `(n,)`.
        percentile: p of the loss percentile the gap is taken to.
        use_labels: feed the noisy label as the label feature (then the
            mentor needs `num_labels` >= the number of classes); by default
            it is 0, as in the released code.

    Returns:
        `(features, targets)`: float32 `(n, 4)` [loss, loss - percentile,
        label, progress] and float32 `(n,)` 1[noisy label == clean label].
        The percentile is taken over the records of the same progress
        value, as the student-time moving percentile tracks the losses of
        that time (the released code takes one over all records).
    """
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    progress = np.asarray(progress).reshape(-1)
    noisy_labels = np.asarray(noisy_labels).reshape(-1)
    clean_labels = np.asarray(clean_labels).reshape(-1)
    if not len(losses) == len(progress) == len(noisy_labels) == len(clean_labels):
        raise ValueError("losses, noisy_labels, clean_labels and progress must have the same length.")
    percentile = _base.checked_number("mentor_training_data", "percentile", percentile, 0.0, 1.0)
    gaps = np.empty_like(losses)
    for value in np.unique(progress):
        at = progress == value
        gaps[at] = losses[at] - np.percentile(losses[at], 100 * percentile)
    labels = noisy_labels if use_labels else np.zeros_like(noisy_labels)
    features = np.stack([losses, gaps, labels, progress], axis=1).astype(np.float32)
    return features, (noisy_labels == clean_labels).astype(np.float32)


class MentorDataRecorder(keras.callbacks.Callback):
    """Records a student's per-example cross-entropy on a labelled subset after every epoch.

    Args:
        x: the subset's inputs.
        noisy_labels: the labels the student trains with (integer classes).
        clean_labels: the true labels (integer classes).
        epochs: the number of epochs of the run (for the progress feature).
        from_logits: whether the student outputs logits.
        batch_size: batch size of the predictions.
    """

    def __init__(self, x, noisy_labels, clean_labels, epochs, from_logits=False, batch_size=256):
        super().__init__()
        self.x = x
        self.noisy_labels = np.asarray(noisy_labels).reshape(-1)
        self.clean_labels = np.asarray(clean_labels).reshape(-1)
        self.epochs = _base.checked_integer("MentorDataRecorder", "epochs", epochs, 1)
        self.from_logits = from_logits
        self.batch_size = batch_size
        self.records = []  # (progress, losses)

    def on_epoch_end(self, epoch, logs=None):
        outputs = np.asarray(self.model.predict(self.x, batch_size=self.batch_size, verbose=0), dtype=np.float64)
        if self.from_logits:
            outputs = outputs - outputs.max(axis=1, keepdims=True)
            log_probs = outputs - np.log(np.exp(outputs).sum(axis=1, keepdims=True))
        else:
            log_probs = np.log(np.clip(outputs, _base.EPSILON, 1.0))
        losses = -log_probs[np.arange(len(self.noisy_labels)), self.noisy_labels]
        self.records.append((mentornet.progress_percent(epoch, self.epochs), losses))

    def training_data(self, percentile=0.7, use_labels=False):
        """`mentor_training_data` over every record so far."""
        if not self.records:
            raise ValueError("MentorDataRecorder has no records: train the student with it first.")
        count = len(self.noisy_labels)
        return mentor_training_data(
            np.concatenate([losses for _, losses in self.records]),
            np.tile(self.noisy_labels, len(self.records)),
            np.tile(self.clean_labels, len(self.records)),
            np.repeat([progress for progress, _ in self.records], count),
            percentile=percentile,
            use_labels=use_labels,
        )


def train_mentor(features, targets, *, mentor=None, epochs=20, batch_size=32, learning_rate=0.1, seed=0,
                 verbose=0):
    """Fits a `MentorNet` (a new one unless `mentor` is given) to predict `targets` from `features`.

    Sigmoid cross-entropy, Adam from `learning_rate` (0.1, as the released
    code) decayed by 0.9 each epoch (the released code decays by 0.9 on a
    step schedule; it trains 30k steps of batch 32). Returns the mentor.
    """
    features = np.asarray(features, dtype=np.float32)
    targets = np.asarray(targets, dtype=np.float32).reshape(-1)
    if features.ndim != 2 or features.shape[1] != len(FEATURES) or len(features) != len(targets):
        raise ValueError(
            f"train_mentor needs features of shape (n, {len(FEATURES)}) {FEATURES} and n targets; got "
            f"{features.shape} and {targets.shape}. Build them with mentor_training_data."
        )
    if mentor is None:
        mentor = MentorNet(seed=seed)
    steps_per_epoch = max(1, int(np.ceil(len(targets) / batch_size)))
    schedule = keras.optimizers.schedules.ExponentialDecay(learning_rate, steps_per_epoch, 0.9, staircase=True)
    mentor.compile(optimizer=keras.optimizers.Adam(schedule), loss=keras.losses.BinaryCrossentropy(from_logits=True),
                   metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
    keras.utils.set_random_seed(seed)
    mentor.fit(features, targets, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=verbose)
    return mentor


@keras.saving.register_keras_serializable(package="tfrobust")
class MentorNetDD(mentornet.MentorNetLoss):
    """MentorNet-DD (Jiang et al.): a learnt mentor weighs the student's examples.

    For each example, v_i = sigmoid(mentor([l_i, l_i - l_pt, label, t])),
    with l_pt the moving loss percentile and t the progress in percent (see
    `MentorNetPD`, whose moving percentile and schedule it shares); the loss
    is (1/B) sum_i v_i l_i, with no gradient through v (the mentor is fixed
    while the student trains, as in the released code). `MentorNetSchedule`
    must set the progress each epoch.

    The mentor travels inside the loss's config (its architecture and its
    few hundred weights), so a student saved as .keras reloads with it.

    Args:
        mentor: a `MentorNet` (trained with `train_mentor`), the path of a
            saved one (.keras), or its config as `get_config()` gives it.
        percentile: p of the moving percentile. Defaults to `0.7`.
        moving_average_decay: d of the moving percentile. Defaults to `0.5`.
        burn_in_fraction: share of the run with all weights 1. Defaults to
            `0.0` (the released commands pass burn_in_epoch=0).
        use_labels: feed the label (argmax of the targets) to the mentor
            instead of 0; the mentor must have been trained that way.
        base_loss: a Keras loss returning one value per example; `None` is
            cross-entropy.
        from_logits: for the default cross-entropy only.
        reduction, name, dtype: as for every Keras loss.
    """

    def __init__(
        self,
        mentor,
        percentile=0.7,
        moving_average_decay=0.5,
        burn_in_fraction=0.0,
        use_labels=False,
        base_loss=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="mentornet_dd",
        dtype=None,
    ):
        super().__init__(percentile, moving_average_decay, burn_in_fraction, base_loss, from_logits, reduction,
                         name, dtype)
        self.mentor = _as_mentor(mentor)
        self.use_labels = bool(use_labels)

    def example_weights(self, losses, loss_gaps, progress, targets):
        labels = ops.cast(ops.argmax(targets, axis=-1), losses.dtype) if self.use_labels else ops.zeros_like(losses)
        features = ops.stack([losses, loss_gaps, labels, ops.ones_like(losses) * progress], axis=1)
        return ops.cast(ops.sigmoid(self.mentor(ops.cast(features, "float32"), training=False)), losses.dtype)

    def get_config(self):
        config = super().get_config()
        model = keras.saving.serialize_keras_object(self.mentor)
        # The student needs the mentor's forward pass only, not how it was compiled; its
        # input shape is fixed (a JSON round trip would turn the build config's tuple into a list).
        model.pop("compile_config", None)
        model.pop("build_config", None)
        config["mentor"] = {
            "model": model,
            "weights": [weight.tolist() for weight in self.mentor.get_weights()],
        }
        return config


def _as_mentor(mentor):
    if isinstance(mentor, str):
        mentor = keras.models.load_model(mentor)
    elif isinstance(mentor, dict) and set(mentor) == {"model", "weights"}:
        rebuilt = keras.saving.deserialize_keras_object(mentor["model"])
        if not rebuilt.built:
            rebuilt.build((None, len(FEATURES)))
        rebuilt.set_weights([np.asarray(weight, dtype=np.float32) for weight in mentor["weights"]])
        mentor = rebuilt
    if not isinstance(mentor, keras.Model):
        raise ValueError(
            "MentorNetDD argument `mentor` must be a MentorNet model (see train_mentor), the path of a saved "
            f".keras mentor, or a mentor config from MentorNetDD.get_config(); got {mentor!r}."
        )
    if not mentor.built:
        mentor.build((None, len(FEATURES)))
    return mentor
