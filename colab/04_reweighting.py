# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Learning example weights from a small clean set: Meta-Weight-Net and L2RW
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tfrobust/tfrobust/blob/main/colab/04_reweighting.ipynb)
#
# When a handful of training examples can be checked by hand, a model can learn *how much to
# trust* each noisy example. Learning to Re-Weight (L2RW, Ren et al., ICML 2018) and
# Meta-Weight-Net (MW-Net, Shu et al., NeurIPS 2019) weigh every example of a noisy batch so
# that one look-ahead step on the weighted batch would lower the loss on a small *clean* meta
# batch. L2RW computes fresh weights for each batch; MW-Net learns a small network V(loss) that
# maps an example's loss to its weight. This notebook trains both on MNIST digits with 40% of
# the training labels corrupted and 10 clean examples per class, draws the weight function
# MW-Net learned, shows the weights given to clean and to corrupted examples, and compares test
# accuracy with plain cross-entropy.

# %% [markdown]
# ## Install
#
# Colab already has TensorFlow and Keras; this installs tfrobust from GitHub. Skip it on a
# machine where tfrobust is installed.

# %% tags=["install"]
# !pip install "tfrobust @ git+https://github.com/tfrobust/tfrobust"

# %% [markdown]
# **Runtime.** Each re-weighting step costs about two plain steps (a look-ahead on the clean
# batch, then the real update), and the models are small: the CPU runtime runs the defaults in
# a few minutes.
#
# ## Parameters
#
# The tests run the notebook with one epoch and a smaller training split.

# %% tags=["parameters"]
EPOCHS = 10
BATCH_SIZE = 100
LEARNING_RATE = 0.1  # SGD with momentum 0.9, the same for every method
NOISE = "symmetric:0.4"  # 40% of the training labels flipped to another class, uniformly
META_PER_CLASS = 10  # clean examples per class in the meta set
MAX_TRAIN_EXAMPLES = None  # None: the whole training split; a number keeps that many (faster)
SEED = 0  # fixes the split, the noise, the meta set, the initial weights and the batch order
OUTPUT_DIR = "tfrobust_outputs/04_reweighting"

# %% [markdown]
# ## Imports
#
# `tfrobust.reweighting` holds the trainers. Each one is a `keras.Model` that wraps your
# classifier and overrides `train_step`, so `compile`, `fit`, callbacks and progress bars work
# as usual and the classifier itself is trained in place. They run on Keras's TensorFlow
# backend.

# %%
import os
import pathlib

os.environ["KERAS_BACKEND"] = "tensorflow"

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

from tfrobust import datasets, metrics, reweighting

OUTPUT_DIR = pathlib.Path(OUTPUT_DIR)
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Noisy MNIST-5k and a clean meta set
#
# `mnist5k` is 5,000 MNIST digits bundled with a pip package, so nothing is downloaded.
# `meta_split(per_class=...)` takes that many training examples of each class, gives them their
# *true* labels (as if someone had checked them) and removes them from the training split, so
# the classifier never trains on them. `is_corrupted` marks the training examples whose label
# the noise changed: the trainers never see it, but it tells us afterwards how they treated the
# wrong labels.

# %%
noisy = datasets.load("mnist5k", noise=NOISE, seed=SEED)
meta, data = noisy.meta_split(per_class=META_PER_CLASS, seed=SEED)
if MAX_TRAIN_EXAMPLES is not None and MAX_TRAIN_EXAMPLES < len(data.y_train):
    data = data.without_training_examples(np.arange(MAX_TRAIN_EXAMPLES, len(data.y_train)))
print(data)
print(f"meta set: {len(meta[1])} clean examples; training split: {len(data.y_train)} examples, "
      f"{data.is_corrupted.sum()} of them with a wrong label")

# %% [markdown]
# ## Training
#
# One function trains the same MLP from the same initial weights, on the same batches, with
# plain cross-entropy or inside a re-weighting trainer. `EpochMetrics` records the clean test
# accuracy after every epoch. The trainers take the clean meta set as `meta_data`, use the
# compiled optimizer's learning rate for their look-ahead step and draw their meta batches from
# the seed.

# %%
def build_classifier():
    keras.utils.set_random_seed(SEED)
    return keras.Sequential(
        [keras.Input(data.input_shape), keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
         keras.layers.Dense(data.num_classes, activation="softmax")],
        name="mlp",
    )


def train(method):
    """Trains a fresh classifier with `method` ("ce", "l2rw" or "mwn"); returns it, its trainer and its curves."""
    model = build_classifier()
    optimizer = keras.optimizers.SGD(LEARNING_RATE, momentum=0.9)
    if method == "ce":
        trainer = model
        trainer.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        trainer_class = {"l2rw": reweighting.L2RW, "mwn": reweighting.MetaWeightNet}[method]
        trainer = trainer_class(model, meta_data=meta, seed=SEED)
        trainer.compile(optimizer=optimizer, metrics=["accuracy"])
    tracker = metrics.EpochMetrics(data)
    trainer.fit(data.train_dataset(BATCH_SIZE, seed=SEED), epochs=EPOCHS, verbose=0, callbacks=[tracker])
    print(f"{method}: clean test accuracy {tracker.curves['test_accuracy'][-1]:.3f} after {EPOCHS} epochs")
    return model, trainer, tracker.curves


runs = {method: train(method) for method in ("ce", "l2rw", "mwn")}

# %% [markdown]
# ## The weight function Meta-Weight-Net learned
#
# MW-Net's meta-net is a 1-100-1 MLP from an example's loss to its weight in (0, 1); it starts
# near 0.5 for every loss. Under label noise, a corrupted example tends to have a high loss
# (the model disagrees with its wrong label), so a useful weight function *falls* as the loss
# grows. The curve is drawn over the range of training losses; the histograms underneath show
# where the losses of clean and corrupted training examples lie under the final model.

# %%
mwn_model, mwn_trainer, _ = runs["mwn"]
probabilities = mwn_model.predict(data.x_train, verbose=0)
train_losses = keras.losses.sparse_categorical_crossentropy(data.y_train, probabilities).numpy()
grid = np.linspace(0.0, float(np.quantile(train_losses, 0.99)), 200, dtype="float32")
weight_curve = mwn_trainer.meta_net(grid[:, None]).numpy()[:, 0]

figure, curve_axis = plt.subplots(figsize=(7, 4))
histogram_axis = curve_axis.twinx()
bins = np.linspace(0.0, grid[-1], 40)
histogram_axis.hist(train_losses[~data.is_corrupted], bins=bins, alpha=0.3, color="tab:green", label="clean examples")
histogram_axis.hist(train_losses[data.is_corrupted], bins=bins, alpha=0.3, color="tab:red", label="corrupted examples")
histogram_axis.set_ylabel("training examples")
curve_axis.plot(grid, weight_curve, color="black", linewidth=2, label="V(loss)")
curve_axis.set(xlabel="cross-entropy loss of the training example", ylabel="weight V(loss)",
               title="Meta-Weight-Net's learned weight function")
curve_axis.set_zorder(histogram_axis.get_zorder() + 1)
curve_axis.patch.set_visible(False)
handles = curve_axis.get_legend_handles_labels()[0] + histogram_axis.get_legend_handles_labels()[0]
curve_axis.legend(handles, [handle.get_label() for handle in handles], loc="upper right")
figure.tight_layout()
figure.savefig(OUTPUT_DIR / "weight_function.png", dpi=110)
plt.close(figure)
display(Image(filename=OUTPUT_DIR / "weight_function.png"))

# %% [markdown]
# ## Weights of clean and corrupted examples
#
# The weights each method gives the training examples under its final model, batch by batch.
# L2RW's weights are non-negative and sum to 1 over a batch, so they are multiplied by the batch
# size here (1 is the weight of plain training); many are exactly 0, the examples whose gradient
# points away from the clean batch's. MW-Net's weights are V(loss) for each example's loss. A
# method that spots the noise puts the corrupted examples (red) at lower weights than the clean
# ones (green).

# %%
def batch_weights(trainer, scale):
    return np.concatenate([
        scale * trainer.example_weights(data.x_train[start:start + BATCH_SIZE], data.y_train[start:start + BATCH_SIZE])
        for start in range(0, len(data.y_train), BATCH_SIZE)
    ])


example_weights = {
    "L2RW (x batch size)": batch_weights(runs["l2rw"][1], BATCH_SIZE),
    "Meta-Weight-Net": batch_weights(runs["mwn"][1], 1.0),
}
figure, axes = plt.subplots(1, 2, figsize=(11, 4))
for axis, (name, weights) in zip(axes, example_weights.items()):
    bins = np.linspace(0.0, max(float(weights.max()), 1e-6), 30)
    axis.hist(weights[~data.is_corrupted], bins=bins, alpha=0.6, color="tab:green", label="clean examples")
    axis.hist(weights[data.is_corrupted], bins=bins, alpha=0.6, color="tab:red", label="corrupted examples")
    axis.set(title=name, xlabel="example weight", ylabel="training examples")
    axis.legend()
    print(f"{name}: mean weight {weights[~data.is_corrupted].mean():.3f} (clean) vs "
          f"{weights[data.is_corrupted].mean():.3f} (corrupted)")
figure.tight_layout()
figure.savefig(OUTPUT_DIR / "example_weights.png", dpi=110)
plt.close(figure)
display(Image(filename=OUTPUT_DIR / "example_weights.png"))

# %% [markdown]
# ## Test accuracy against cross-entropy
#
# Clean test accuracy epoch by epoch, and a table of the final and best values. Cross-entropy
# keeps fitting the wrong labels, so its accuracy peaks early and then falls; the re-weighting
# methods down-weight the examples that disagree with the clean set. They also had 100 clean
# labels that cross-entropy did not use: a fair comparison with a clean-data-free loss (such as
# `TaylorLoss.pretrained()`, notebook 01) keeps that in mind.

# %%
names = {"ce": "cross-entropy", "l2rw": "L2RW", "mwn": "Meta-Weight-Net"}
figure, axis = plt.subplots(figsize=(7, 4))
for method, (_, _, curves) in runs.items():
    epochs = np.arange(1, len(curves["test_accuracy"]) + 1)
    axis.plot(epochs, curves["test_accuracy"], marker="o", label=names[method])
axis.set(title=f"Clean test accuracy, MNIST-5k, {NOISE} noise", xlabel="epoch", ylabel="accuracy")
axis.grid(alpha=0.3)
axis.legend()
figure.tight_layout()
figure.savefig(OUTPUT_DIR / "test_accuracy.png", dpi=110)
plt.close(figure)
display(Image(filename=OUTPUT_DIR / "test_accuracy.png"))

rows = ["| method | final test accuracy | best test accuracy |", "| --- | --- | --- |"]
for method, (_, _, curves) in runs.items():
    rows.append(f"| {names[method]} | {curves['test_accuracy'][-1]:.3f} | {max(curves['test_accuracy']):.3f} |")
display(Markdown("\n".join(rows)))
print(f"Meta-Weight-Net: clean test accuracy {runs['mwn'][2]['test_accuracy'][-1]:.3f}, "
      f"cross-entropy {runs['ce'][2]['test_accuracy'][-1]:.3f}")

# %% [markdown]
# ## Next steps
#
# - `tfrobust.reweighting` also has WarPI (Sun et al., 2022), whose meta-net rescales each
#   example's logits, and the advisor network (Ricci et al., 2021), which re-weights features.
# - `python -m search.benchmark --preset=reweighting` compares these methods with the robust
#   losses over noise settings and seeds (the methods `l2rw`, `mwn`, `warpi`, `advisor`).
# - `05_imbalance.ipynb` turns to long-tailed classes: LDAM-DRW, ABSGD and balanced accuracy.
