"""The TF-side label-noise sampler: `tf_noise_fn`, re-exported by `tfrobust.noise`."""

import numpy as np

from tfrobust._noise_checks import check_seed, check_transition_matrix


def tf_noise_fn(transition_matrix, *, seed):
    """Returns `noisy_label(index, label)` for use inside `tf.data.Dataset.map`.

    The noisy label of an example is drawn from row `T[label]` by
    `tf.random.stateless_categorical` with the seed `(seed, index)`, so it
    depends only on the seed and the example's index: it is the same in every
    epoch, on every worker and whatever the order or sharding of the
    pipeline. (It is not the same draw as `from_transition_matrix` with the
    same seed, which uses numpy's generator.) The function takes one example
    (scalar index and label, so map before batching) and returns the label in
    the dtype it came in. Example:

        noisy_label = tf_noise_fn(symmetric_transition_matrix(0.4, 10), seed=0)
        dataset = dataset.enumerate().map(
            lambda index, example: (example[0], noisy_label(index, example[1])))
    """
    import tensorflow as tf  # noqa: PLC0415  (only this function needs TensorFlow)

    matrix = check_transition_matrix(transition_matrix)
    seed = check_seed(seed)
    num_classes = matrix.shape[0]
    with np.errstate(divide="ignore"):
        log_matrix = tf.constant(np.log(matrix), tf.float32)  # log 0 = -inf: never drawn
    message = f"tf_noise_fn: labels must lie in [0, {num_classes}) for a {num_classes}-class matrix."

    def noisy_label(index, label):
        label = tf.convert_to_tensor(label)
        class_index = tf.cast(label, tf.int64)
        checks = [
            tf.debugging.assert_non_negative(class_index, message=message),
            tf.debugging.assert_less(class_index, tf.constant(num_classes, tf.int64), message=message),
        ]
        with tf.control_dependencies(checks):
            logits = tf.gather(log_matrix, class_index)[tf.newaxis]
        example_seed = tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)])
        draw = tf.random.stateless_categorical(logits, 1, seed=example_seed, dtype=tf.int64)
        return tf.cast(draw[0, 0], label.dtype)

    return noisy_label
