"""The advisor network against the look-ahead of Ricci et al. (ICIAP 2021) written out here with explicit
weight arithmetic (Dense, BatchNorm in training mode): finite differences in float64 and nested tapes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import reweighting
from tests.l2rw_test import _data
from tests.warpi_test import check_fit_save_and_config
from tests.warpi_test import check_mirrored_matches_single_device
from tests.warpi_test import finite_differences
from tests.warpi_test import float64  # noqa: F401 (a fixture)
from tests.warpi_test import train_on_noisy_digits


def _model(front_norm, back_norm=None, seed=0):
    """d1 -> [bn1] -> tanh ("features") | h1 -> [bn2] -> tanh -> softmax; BatchNorm before / after the split."""
    back_norm = front_norm if back_norm is None else back_norm
    glorot = keras.initializers.GlorotUniform
    layers = [keras.Input((4,)), keras.layers.Dense(6, kernel_initializer=glorot(seed), name="d1")]
    layers += [keras.layers.BatchNormalization(name="bn1")] if front_norm else []
    layers += [keras.layers.Activation("tanh", name="features"),
               keras.layers.Dense(5, kernel_initializer=glorot(seed + 1), name="h1")]
    layers += [keras.layers.BatchNormalization(name="bn2")] if back_norm else []
    layers += [keras.layers.Activation("tanh"),
               keras.layers.Dense(3, activation="softmax", kernel_initializer=glorot(seed + 2), name="out")]
    return keras.Sequential(layers)


def _batch_norm(values, gamma, beta):
    mean, variance = tf.nn.moments(values, axes=[0])  # training mode: batch statistics, biased variance
    return (values - mean) / tf.sqrt(variance + 1e-3) * gamma + beta


def explicit_features(params, x, norms):
    values = x @ params[0] + params[1]
    return tf.tanh(_batch_norm(values, params[2], params[3]) if norms[0] else values)


def explicit_logits(params, features, norms):
    head = params[4:] if norms[0] else params[2:]
    values = features @ head[0] + head[1]
    if norms[1]:
        values, head = _batch_norm(values, head[2], head[3]), head[4:]
    else:
        head = head[2:]
    return tf.tanh(values) @ head[0] + head[1]


def cross_entropy(logits, y):
    return -tf.gather(tf.nn.log_softmax(logits), y, batch_dims=1)


def explicit_meta_loss(params, advisor, x, y, x_meta, y_meta, alpha, norms):
    """L_meta(theta - alpha grad_theta J(theta; A)); the inner gradient by a second tape.

    `norms` says where the model has BatchNormalization (before, after the split).
    """
    features = explicit_features(params, x, norms)
    plain = cross_entropy(explicit_logits(params, features, norms), y)
    advice = advisor([tf.stop_gradient(features), tf.stop_gradient(plain)[:, None]])
    with tf.GradientTape() as inner:
        inner.watch(params)
        features = explicit_features(params, x, norms)
        objective = tf.reduce_mean(cross_entropy(explicit_logits(params, features * advice, norms), y))
    step = inner.gradient(objective, params)
    theta_hat = [p - alpha * g for p, g in zip(params, step)]
    meta_logits = explicit_logits(theta_hat, explicit_features(theta_hat, x_meta, norms), norms)
    return tf.reduce_mean(cross_entropy(meta_logits, y_meta))


def nested_reference(model, advisor, x, y, x_meta, y_meta, alpha, norms):
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    with tf.GradientTape() as outer:
        meta_loss = explicit_meta_loss(params, advisor, x, y, x_meta, y_meta, alpha, norms)
    return [g.numpy() for g in outer.gradient(meta_loss, advisor.trainable_variables)]


@pytest.mark.parametrize("front_norm", [False, True])
def test_meta_gradient_equals_finite_differences(float64, front_norm):  # noqa: F811
    """Exact with BatchNorm in the feature extractor (see test_batch_norm_in_the_head_is_flagged for the head)."""
    x, y, x_meta, y_meta = (a.astype("float64") if a.dtype.kind == "f" else a for a in _data(seed=5))
    norms = (front_norm, False)
    model = _model(*norms)
    advisor = reweighting.build_advisor_net(6, hidden_units=4, seed=2)
    trainer = reweighting.AdvisorNetwork(model, meta_data=(x_meta, y_meta), split="features", meta_net=advisor)
    alpha = 0.7
    params = [tf.constant(v.numpy()) for v in model.trainable_variables]
    checked = finite_differences(
        advisor, lambda: explicit_meta_loss(params, advisor, x, y, x_meta, y_meta, alpha, norms),
        trainer.meta_gradient(x, y, learning_rate=alpha), 3, seed=1,
    )
    for path, analytic, estimate in checked:
        np.testing.assert_allclose(analytic, estimate, rtol=1e-3, atol=1e-9, err_msg=path)
    assert sum(abs(estimate) > 1e-5 for _, _, estimate in checked) >= 10, "most entries must carry signal"


def test_batch_norm_in_the_head_is_flagged(float64):  # noqa: F811
    """TensorFlow drops a second-order term of BatchNorm (tf.nn.moments stops the mean's gradient in the
    variance); with BatchNorm after the split the meta-gradient is approximate, and the trainer says so.
    If this test starts failing on the gap, TensorFlow has fixed it: remove the warning."""
    x, y, x_meta, y_meta = (a.astype("float64") if a.dtype.kind == "f" else a for a in _data(seed=5))
    model = _model(False, True)
    advisor = reweighting.build_advisor_net(6, hidden_units=4, seed=2)
    with pytest.warns(UserWarning, match=r"\['bn2'\].*approximate.*Split after the last BatchNormalization"):
        trainer = reweighting.AdvisorNetwork(model, meta_data=(x_meta, y_meta), split="features", meta_net=advisor)
    params = [tf.constant(v.numpy()) for v in model.trainable_variables]
    kernel = advisor.trainable_variables[0]
    original = kernel.numpy()
    shift = np.zeros_like(original)
    shift[0, 0] = 1e-6
    values = []
    for sign in (1.0, -1.0):
        kernel.assign(original + sign * shift)
        values.append(float(explicit_meta_loss(params, advisor, x, y, x_meta, y_meta, 0.7, (False, True))))
    kernel.assign(original)
    estimate = (values[0] - values[1]) / 2e-6
    analytic = trainer.meta_gradient(x, y, learning_rate=0.7)[0][0, 0]
    # Measured: 25% on this entry (0.2% to 12% on others). Same sign, same order of magnitude.
    assert 1e-2 * abs(estimate) < abs(analytic - estimate) < 0.5 * abs(estimate)


def test_train_step_matches_manual_bilevel_update():
    x, y, x_meta, y_meta = _data(seed=6)
    model = _model(False)
    advisor = reweighting.build_advisor_net(6, hidden_units=4, seed=0)
    learning_rate, meta_learning_rate = 0.5, 0.4
    params = [tf.constant(v.numpy()) for v in model.trainable_variables]

    # Steps 1-2: the advisor's SGD step on the look-ahead meta loss.
    meta_gradient = nested_reference(model, advisor, x, y, x_meta, y_meta, learning_rate, (False, False))
    reference = reweighting.build_advisor_net(6, hidden_units=4)
    reference.set_weights([w - meta_learning_rate * g for w, g in zip(advisor.get_weights(), meta_gradient)])
    # Step 3: the updated advice (detached, from the loss at theta), SGD on the advised CE.
    with tf.GradientTape() as tape:
        tape.watch(params)
        features = explicit_features(params, x, (False, False))
        plain = cross_entropy(explicit_logits(params, features, (False, False)), y)
        advice = tf.stop_gradient(reference([features, plain[:, None]]))
        objective = tf.reduce_mean(cross_entropy(explicit_logits(params, features * advice, (False, False)), y))
    new_params = [p - learning_rate * g for p, g in zip(params, tape.gradient(objective, params))]

    trainer = reweighting.AdvisorNetwork(model, meta_data=(x_meta, y_meta), split="features", meta_net=advisor,
                                         meta_optimizer=keras.optimizers.SGD(meta_learning_rate))
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    history = trainer.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    for after, want in zip(advisor.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(after, want, atol=1e-6)
    for after, want in zip(model.get_weights(), new_params):
        np.testing.assert_allclose(after, want, atol=1e-6)
    np.testing.assert_allclose(history.history["loss"][0], float(objective), rtol=1e-5)


def test_batchnorm_statistics_are_those_of_one_advised_step():
    """f's statistics from its one forward, h's from the one advised head forward; look-ahead ones discarded."""
    x, y, x_meta, y_meta = _data()
    model, plain = _model(True), _model(True)
    plain.set_weights(model.get_weights())
    trainer = reweighting.AdvisorNetwork(model, meta_data=(x_meta, y_meta), split="features", meta_batch_size=4)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    trainer.fit(x, y, batch_size=len(y), epochs=1, verbose=0)

    cut = [layer.name for layer in plain.layers].index("features") + 1
    front, back = keras.Sequential(plain.layers[:cut]), keras.Sequential(plain.layers[cut:])
    features = front(x, training=True)
    frozen = [v.numpy() for v in back.non_trainable_variables]
    # The unadvised head forward (training mode) feeds the advisor its loss input...
    plain_losses = keras.losses.sparse_categorical_crossentropy(y, back(features, training=True))
    for variable, value in zip(back.non_trainable_variables, frozen):
        variable.assign(value)  # ...and its statistics are discarded
    back(features * trainer.meta_net([features, plain_losses[:, None]]), training=True)  # the updated advisor
    for got, want in zip(model.non_trainable_variables, plain.non_trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6, err_msg=got.path)
    moving_means = plain.non_trainable_variables[::2]  # one step at momentum 0.99: 1% of the batch means
    assert all(np.abs(v.numpy()).max() > 1e-4 for v in moving_means), "both layers' statistics must move"


def test_fit_save_and_config_round_trip(tmp_path):
    check_fit_save_and_config(reweighting.AdvisorNetwork, _model(True), tmp_path, split="features")


def test_feature_extractor_and_head_as_two_models(tmp_path):
    x, y, x_meta, y_meta = _data()
    feature_extractor = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="tanh")], name="body")
    head = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")], name="head")
    before = feature_extractor.get_weights() + head.get_weights()
    trainer = reweighting.AdvisorNetwork((feature_extractor, head), meta_data=(x_meta, y_meta), meta_batch_size=4)
    assert trainer.split == "body" and trainer.parts.feature_dim == 6
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    trainer.fit(x, y, batch_size=6, epochs=1, verbose=0)
    after = feature_extractor.get_weights() + head.get_weights()
    assert all(not np.allclose(a, b) for a, b in zip(after, before)), "both user models are trained in place"
    np.testing.assert_allclose(trainer.model(x), head(feature_extractor(x)), atol=1e-6)
    rebuilt = reweighting.AdvisorNetwork.from_config(trainer.get_config())
    assert rebuilt.get_config() == trainer.get_config()
    with pytest.raises(ValueError, match="not both"):
        reweighting.AdvisorNetwork((feature_extractor, head), split="body")


def test_bad_split_and_input_are_named():
    x, y, x_meta, y_meta = _data()
    meta = (x_meta, y_meta)
    with pytest.raises(ValueError, match="needs to know where to split.*split=<name"):
        reweighting.AdvisorNetwork(_model(False), meta_data=meta)
    with pytest.raises(ValueError, match=r"'feature' is not a layer of .*'features'"):
        reweighting.AdvisorNetwork(_model(False), meta_data=meta, split="feature")
    with pytest.raises(ValueError, match="'out' is the last layer.*no head"):
        reweighting.AdvisorNetwork(_model(False), meta_data=meta, split="out")
    images = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, name="conv"), keras.layers.Flatten(),
                               keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match=r"'conv' outputs shape \(None, 2, 2, 2\).*flat \(batch, d\)"):
        reweighting.AdvisorNetwork(images, split="conv")
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(5, name="a")(inputs)
    deeper = keras.layers.Dense(5, name="b")(hidden)
    skip = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Add()([hidden, deeper])))
    with pytest.raises(ValueError, match="cannot split .* at 'b'.*bypasses the split point"):
        reweighting.AdvisorNetwork(skip, meta_data=meta, split="b")
    wrong = reweighting.build_advisor_net(5)
    with pytest.raises(ValueError, match=r"meta_net.*d = 6 \(the output size of split point 'features'\)"):
        reweighting.AdvisorNetwork(_model(False), meta_data=meta, split="features", meta_net=wrong)
    trainer = reweighting.AdvisorNetwork(_model(False), split="features")
    trainer.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="has no meta set.*meta_split"):
        trainer.fit(x, y, epochs=1, verbose=0)


def test_mirrored_strategy_matches_single_device():
    check_mirrored_matches_single_device(
        lambda meta: reweighting.AdvisorNetwork(_model(False), meta_data=meta, split="features",
                                                meta_batch_size=6, seed=1)
    )


def test_end_to_end_on_noisy_digits():
    # Measured over seeds 0-2 (10 epochs of 12 steps): test accuracy 0.85-0.93 (chance 0.1).
    accuracy = train_on_noisy_digits(
        lambda model, meta: reweighting.AdvisorNetwork(model, meta_data=meta, split="features", seed=0)
    )
    assert accuracy > 0.5
