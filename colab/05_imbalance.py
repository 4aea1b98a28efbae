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
# # Long-tailed classes: LDAM-DRW, ABSGD and balanced accuracy
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tfrobust/tfrobust/blob/main/colab/05_imbalance.ipynb)
#
# Real training sets are often long-tailed: a few classes have many examples, most have few.
# A model trained with plain cross-entropy then favours the head classes, and its accuracy on
# the rare classes suffers, which overall accuracy on an imbalanced test set hides. This
# notebook makes MNIST digits long-tailed (class 0 keeps its examples, class 9 a hundredth of
# them), trains the same network with cross-entropy, with LDAM-DRW (Cao et al., NeurIPS 2019),
# with ABSGD (Qi et al., TMLR 2023) and with tfrobust's `TaylorLoss.pretrained()`, and
# compares them class by class on a *balanced* test set.

# %% [markdown]
# ## Install
#
# Colab already has TensorFlow and Keras; this installs tfrobust from GitHub. Skip it on a
# machine where tfrobust is installed.

# %% tags=["install"]
# !pip install "tfrobust @ git+https://github.com/tfrobust/tfrobust"

# %% [markdown]
# **Runtime.** The long-tailed training split is small (under a thousand examples at ratio
# 100), so the CPU runtime runs the defaults in a couple of minutes.
#
# ## Parameters
#
# `IMBALANCE` is an imbalance spec: `"longtail:RHO"` shrinks class c to `n_max * RHO^(-c/9)`
# examples, so RHO is the ratio of the largest class to the smallest; `"step:RHO"` keeps half
# the classes whole and cuts the other half by RHO. The two schedules switch their method on
# for the last fifth of training, as both official scripts do (epoch 160 of 200). The tests
# run the notebook with two epochs.

# %% tags=["parameters"]
EPOCHS = 30
BATCH_SIZE = 64
LEARNING_RATE = 1e-3  # Adam, the same for every method (the benchmark's default)
IMBALANCE = "longtail:100"  # or "longtail:10", "step:10"
NOISE = "none"  # the training labels may be noisy too, e.g. "symmetric:0.2"
SWITCH_FRACTION = 160 / 200  # DRW and ABSGD start at this fraction of the epochs
ABSGD_SETTINGS = {"temperature": 5.0, "gamma": 0.7, "alpha": 0.5}  # the official CIFAR-10-LT script's
SEED = 0  # fixes the split, the subsampling, the initial weights and the batch order
OUTPUT_DIR = "tfrobust_outputs/05_imbalance"

# %% [markdown]
# ## Imports
#
# `tfrobust.imbalance` has the long-tailed profiles and the class-wise accuracy measures;
# `tfrobust.losses` the losses and their per-epoch schedule callbacks; `tfrobust.layers` the
# cosine classifier head that LDAM needs.

# %%
import os
import pathlib

os.environ["KERAS_BACKEND"] = "tensorflow"

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

from tfrobust import datasets, imbalance, layers, metrics
from tfrobust.losses import ABSGD, ABSGDSchedule, DeferredReweighting, LDAMLoss, TaylorLoss

OUTPUT_DIR = pathlib.Path(OUTPUT_DIR)
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
SWITCH_EPOCH = int(SWITCH_FRACTION * EPOCHS)  # epochs count from 0, as fit counts them

# %% [markdown]
# ## Long-tailed MNIST-5k
#
# `load(..., imbalance=...)` subsamples the *training* split only; the validation and test
# splits stay balanced, so accuracy on the test split weighs every class equally. Which
# examples a class keeps is drawn from the seed. The counts per class are what LDAM's margins
# are computed from.

# %%
data = datasets.load("mnist5k", noise=NOISE, imbalance=IMBALANCE, seed=SEED)
counts = imbalance.class_counts(data.y_train, data.num_classes)
print(data)
print(f"imbalance {data.imbalance}: training examples per class {counts.tolist()}; "
      f"test examples per class {imbalance.class_counts(data.y_test, data.num_classes).tolist()}")

figure, axis = plt.subplots(figsize=(7, 3))
axis.bar(np.arange(data.num_classes), counts, color="tab:gray")
axis.set(title=f"Training examples per class ({data.imbalance})", xlabel="class", ylabel="examples",
         xticks=np.arange(data.num_classes))
figure.tight_layout()
figure.savefig(OUTPUT_DIR / "class_counts.png", dpi=110)
plt.close(figure)
display(Image(filename=OUTPUT_DIR / "class_counts.png"))

# %% [markdown]
# ## The methods
#
# Every method trains the same hidden layers from the same initial weights on the same batches:
#
# - **cross-entropy**, the baseline;
# - **LDAM-DRW**: the classifier's last layer becomes a `CosineClassifier` (cosine similarity
#   between the normalised features and normalised class weights), and `LDAMLoss` subtracts a
#   margin from the labelled class's score, larger for rarer classes (proportional to
#   n_c^(-1/4)). The `DeferredReweighting` callback switches on class-balanced weights late in
#   training (DRW: deferred re-weighting);
# - **ABSGD**: each example is weighted by exp(loss / lambda) within its batch; lambda > 0
#   up-weights the hard examples, which in a long-tailed set are mostly of the rare classes.
#   `ABSGDSchedule` switches the weights on late in training;
# - **`TaylorLoss.pretrained()`**, the learned loss of notebook 01, made for label noise: it
#   shows what a noise-robust loss does to the rare classes.

# %%
def hidden_layers():
    return [keras.Input(data.input_shape), keras.layers.Flatten(), keras.layers.Dense(128, activation="relu")]


def build(method):
    """`(model, loss, callbacks)` for `method`; the same seeded hidden layers for every method."""
    keras.utils.set_random_seed(SEED)
    if method == "LDAM-DRW":
        model = keras.Sequential([*hidden_layers(), layers.CosineClassifier(data.num_classes)], name="mlp_cosine")
        loss = LDAMLoss(counts)
        return model, loss, [DeferredReweighting(SWITCH_EPOCH, loss=loss)]
    model = keras.Sequential([*hidden_layers(), keras.layers.Dense(data.num_classes, activation="softmax")],
                             name="mlp")
    if method == "ABSGD":
        loss = ABSGD(**ABSGD_SETTINGS)
        return model, loss, [ABSGDSchedule(SWITCH_EPOCH, loss=loss)]
    if method == "TaylorLoss":
        return model, TaylorLoss.pretrained(), []
    return model, keras.losses.SparseCategoricalCrossentropy(), []


def train(method):
    model, loss, callbacks = build(method)
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss, metrics=["accuracy"])
    tracker = metrics.EpochMetrics(data)
    model.fit(data.train_dataset(BATCH_SIZE, seed=SEED), epochs=EPOCHS, verbose=0, callbacks=[*callbacks, tracker])
    predicted = np.argmax(model.predict(data.x_test, verbose=0), axis=-1)
    print(f"{method}: balanced test accuracy {imbalance.balanced_accuracy(data.y_test, predicted, data.num_classes):.3f}")
    return predicted, tracker.curves


METHODS = ["cross-entropy", "LDAM-DRW", "ABSGD", "TaylorLoss"]
runs = {method: train(method) for method in METHODS}

# %% [markdown]
# ## Accuracy class by class
#
# The bars give each method's test accuracy on each class, the classes ordered from the most
# to the fewest training examples. Cross-entropy does well on the head classes and worse and
# worse towards the tail; a method for imbalance trades a little head accuracy for more tail
# accuracy.

# %%
per_class = {method: imbalance.per_class_accuracy(data.y_test, predicted, data.num_classes)
             for method, (predicted, _) in runs.items()}
figure, axis = plt.subplots(figsize=(11, 4))
width = 0.8 / len(per_class)
for index, (method, accuracy) in enumerate(per_class.items()):
    axis.bar(np.arange(data.num_classes) + (index - (len(per_class) - 1) / 2) * width, accuracy, width, label=method)
axis.set(title=f"Test accuracy per class, MNIST-5k {data.imbalance}", xlabel="class (training examples)",
         ylabel="accuracy", ylim=(0, 1.05), xticks=np.arange(data.num_classes),
         xticklabels=[f"{label}\n({count})" for label, count in enumerate(counts)])
axis.grid(axis="y", alpha=0.3)
axis.legend(loc="lower left")
figure.tight_layout()
figure.savefig(OUTPUT_DIR / "per_class_accuracy.png", dpi=110)
plt.close(figure)
display(Image(filename=OUTPUT_DIR / "per_class_accuracy.png"))

# %% [markdown]
# ## The table
#
# Balanced accuracy is the mean of the per-class accuracies, so every class counts the same
# whatever the test split holds (MNIST-5k's is balanced, so here it is also the plain test
# accuracy); rarest-classes accuracy is the mean over the 20% of classes with the fewest
# training examples, where the methods differ most. The last column is the best test accuracy
# over the epochs, to tell a method that peaked early from one still improving.
#
# What to look for: LDAM-DRW's margins and late class weights act on the rare classes
# directly. ABSGD's weights exp(loss / lambda) only matter while the losses of the examples
# differ: a small network that has fitted every training example by the time the weights
# switch on gives them all nearly the same weight, and then trains as cross-entropy does. A
# loss made to resist label noise, as `TaylorLoss` is, learns slowly from examples it gets
# wrong, which in a long-tailed set are mostly those of the rare classes.

# %%
rows = ["| method | balanced accuracy | rarest-classes accuracy | best test accuracy over epochs |",
        "| --- | --- | --- | --- |"]
for method, (predicted, curves) in runs.items():
    balanced = imbalance.balanced_accuracy(data.y_test, predicted, data.num_classes)
    rarest = imbalance.rarest_classes_accuracy(data.y_test, predicted, counts)
    rows.append(f"| {method} | {balanced:.3f} | {rarest:.3f} | {max(curves['test_accuracy']):.3f} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# ## Next steps
#
# - `python -m search.benchmark --preset=imbalance` runs these methods (and BARE, L2RW and
#   Meta-Weight-Net with a balanced clean set) on long-tailed MNIST-5k at ratios 10 and 100,
#   with and without label noise, over several seeds.
# - `04_reweighting.ipynb` learns example weights from a small clean set instead.
