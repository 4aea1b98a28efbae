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
# # Quickstart: training through label noise with `TaylorLoss`
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tfrobust/tfrobust/blob/main/colab/01_quickstart.ipynb)
#
# Real labels are noisy, and a deep network trained with cross-entropy fits the wrong labels
# too: first it learns the patterns shared by the clean examples, then it memorises the
# corrupted ones one by one, and its accuracy on clean data falls. This notebook shows that
# happening on MNIST digits with 40% of the training labels corrupted, swaps in tfrobust's
# learned loss with one line (`model.compile(loss=TaylorLoss.pretrained())`), plots the learned
# loss next to cross-entropy and mean absolute error, and saves and reloads the trained model.
# Everything runs in a couple of minutes, on a CPU or a GPU.

# %% [markdown]
# ## Install
#
# Colab already has TensorFlow and Keras; this installs tfrobust from GitHub. Skip it on a
# machine where tfrobust is installed (`pip install -e ".[cpu]"` from a clone).

# %% tags=["install"]
# !pip install "tfrobust @ git+https://github.com/tfrobust/tfrobust"

# %% [markdown]
# **Runtime.** The models here are small, so the default CPU runtime is enough. A GPU
# (*Runtime → Change runtime type → T4 GPU*) makes the longer runs in the other notebooks
# faster; nothing in this notebook needs one.
#
# ## Parameters
#
# The settings of the whole notebook. The defaults take a couple of minutes; the tests run the
# notebook with fewer epochs.

# %% tags=["parameters"]
EPOCHS = 30  # training epochs of every model
BATCH_SIZE = 64
NOISE = "symmetric:0.4"  # 40% of the training labels flipped to another class, uniformly
SEED = 0  # fixes the split, the noise, the initial weights and the batch order
OUTPUT_DIR = "tfrobust_outputs/01_quickstart"  # figures and the saved model go here

# %% [markdown]
# ## Imports
#
# `datasets` loads data with noisy training labels, `models` builds small networks,
# `losses.TaylorLoss` is the learned loss, and `metrics.EpochMetrics` is a Keras callback that
# measures clean test accuracy and memorisation after every epoch. The losses are written with
# `keras.ops` and run on any Keras backend; the data pipelines, the search and the benchmark use
# TensorFlow, so this notebook picks the TensorFlow backend (Colab's default) before Keras loads.

# %%
import os
import pathlib

os.environ["KERAS_BACKEND"] = "tensorflow"

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from tfrobust import datasets, metrics, models, plotting
from tfrobust.losses import MeanAbsoluteError, TaylorLoss

OUTPUT_DIR = pathlib.Path(OUTPUT_DIR)
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Noisy MNIST-5k
#
# `mnist5k` is 5,000 real MNIST digits that ship inside a pip package, so nothing is
# downloaded. `load` splits them into training, validation and test sets and corrupts the
# training labels only: `y_train` holds the noisy labels, `y_train_clean` the true ones and
# `is_corrupted` marks the examples whose label was changed. The validation and test labels
# stay clean, so test accuracy measures what the model really learned.

# %%
data = datasets.load("mnist5k", noise=NOISE, seed=SEED)
print(data)
print(f"{data.is_corrupted.sum()} of {len(data.y_train)} training labels are wrong "
      f"(realised noise rate {data.noisy_labels.realised_rate:.3f})")

# %% [markdown]
# ## Training with memorisation tracking
#
# One function trains a one-hidden-layer MLP with a given loss. Every model starts from the same
# initial weights and sees the batches in the same order, so the losses are compared on equal
# terms. `EpochMetrics` records, after each epoch, the clean test accuracy and the share of
# *corrupted* training examples that the model predicts with their *noisy* label: that share is
# memorisation, since the only way to predict a wrong label is to have learned it by heart.

# %%
def train(loss):
    """Trains an MLP on the noisy labels; returns the model and its per-epoch curves."""
    keras.utils.set_random_seed(SEED)
    model = models.build_model("mlp", data.input_shape, data.num_classes, seed=SEED)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    tracker = metrics.EpochMetrics(data)
    model.fit(data.x_train, data.y_train, batch_size=BATCH_SIZE, epochs=EPOCHS, verbose=0, callbacks=[tracker])
    return model, tracker.curves


# %% [markdown]
# ## Cross-entropy memorises the noise
#
# Train with the usual cross-entropy. The model outputs probabilities (a softmax layer), and
# the labels are class indices, hence `SparseCategoricalCrossentropy`.

# %%
ce_model, ce_curves = train(keras.losses.SparseCategoricalCrossentropy())
print(f"cross-entropy: clean test accuracy {ce_curves['test_accuracy'][-1]:.3f} after {EPOCHS} epochs "
      f"(best {max(ce_curves['test_accuracy']):.3f})")

# %% [markdown]
# The memorisation curve: on the left, the share of corrupted training examples predicted with
# their noisy label; on the right, clean test accuracy. With cross-entropy the left curve keeps
# climbing as the network learns more and more of the wrong labels by heart, while test accuracy
# peaks within a few epochs and then falls: every wrong label the network fits costs it some
# accuracy on clean data. The figure is also saved in `OUTPUT_DIR`.

# %%
def plot_memorisation(curves_by_loss, filename):
    """Memorisation and clean test accuracy per epoch, one line per loss."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, curves in curves_by_loss.items():
        epochs = np.arange(1, len(curves["test_accuracy"]) + 1)
        left.plot(epochs, curves["corrupted_predicted_noisy"], label=label)
        right.plot(epochs, curves["test_accuracy"], label=label)
    left.set(title="Memorisation of the corrupted labels", xlabel="epoch",
             ylabel="corrupted examples predicted as their noisy label", ylim=(-0.02, 1.02))
    right.set(title="Clean test accuracy", xlabel="epoch", ylabel="accuracy")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(OUTPUT_DIR / filename, dpi=110)
    plt.close(figure)
    # Shown from the file rather than with plt.show(): tfrobust's plotting helpers switch
    # matplotlib to its file-only backend, after which plt.show() shows nothing.
    display(Image(filename=OUTPUT_DIR / filename))


plot_memorisation({"cross-entropy": ce_curves}, "memorisation_ce.png")

# %% [markdown]
# ## A robust loss in one line
#
# `TaylorLoss.pretrained()` is the default preset of tfrobust's loss family: a polynomial in the
# label and the predicted probability whose coefficients were chosen so that models trained with
# it keep their clean accuracy under label noise. It is an ordinary `keras.losses.Loss`, so it
# goes straight into `model.compile`. Each preset records where it came from: the command that
# produced it, the seed, the budget and the fitness it reached.

# %%
for name, description in TaylorLoss.presets().items():
    print(f"{name}: {description}")
default = TaylorLoss.preset_info()
print(f"\ndefault preset: {default['name']}, coefficients {np.round(default['coefficients'], 3).tolist()}")
for key, value in default["provenance"].items():
    print(f"  {key}: {value}")

# %% [markdown]
# Train the same network from the same initial weights with the pretrained loss.

# %%
taylor_model, taylor_curves = train(TaylorLoss.pretrained())
print(f"TaylorLoss.pretrained(): clean test accuracy {taylor_curves['test_accuracy'][-1]:.3f} "
      f"(best {max(taylor_curves['test_accuracy']):.3f})")
print(f"cross-entropy:           clean test accuracy {ce_curves['test_accuracy'][-1]:.3f} "
      f"(best {max(ce_curves['test_accuracy']):.3f})")

# %% [markdown]
# Both losses on one memorisation plot. What to look for: a loss that resists the noise
# memorises fewer corrupted labels (a lower curve on the left) and keeps more of its peak test
# accuracy as training goes on (a flatter curve on the right). How large the gap is depends on
# the preset; its provenance, printed above, says how it was obtained and on which tasks it was
# scored.

# %%
plot_memorisation({"cross-entropy": ce_curves, "TaylorLoss.pretrained()": taylor_curves},
                  "memorisation_ce_vs_taylor.png")

# %% [markdown]
# ## What the learned loss looks like
#
# `plot_loss_curves` draws each loss for one example as a function of the probability the model
# gives its labelled class (shifted and scaled to [0, 1], since a constant offset or factor
# does not change what a model learns). Cross-entropy grows without bound as that probability
# goes to 0, so a confidently "wrong" example, which under label noise is often a correctly
# classified example with a wrong label, pulls hard on the weights. Mean absolute error is
# bounded and robust, but learns slowly. Compare where the learned loss sits between them.

# %%
loss_plot = plotting.plot_loss_curves(
    {
        "TaylorLoss.pretrained()": TaylorLoss.pretrained(),
        "cross-entropy": keras.losses.CategoricalCrossentropy(),
        "MAE": MeanAbsoluteError(),
    },
    OUTPUT_DIR / "loss_curves.png",
)
display(Image(filename=loss_plot))

# %% [markdown]
# ## Saving and reloading
#
# `TaylorLoss` is registered with Keras's serialisation, so a model compiled with it saves to a
# `.keras` file and loads back with its loss and coefficients, with no `custom_objects`.
# Evaluating the reloaded model gives exactly the numbers of the original.

# %%
model_path = OUTPUT_DIR / "taylor_mlp.keras"
taylor_model.save(model_path)
reloaded = keras.models.load_model(model_path)

before = taylor_model.evaluate(data.x_test, data.y_test, verbose=0, return_dict=True)
after = reloaded.evaluate(data.x_test, data.y_test, verbose=0, return_dict=True)
print("original:", before)
print("reloaded:", after)
print("reloaded loss:", type(reloaded.loss).__name__, reloaded.loss.coefficients)
assert before == after, "the reloaded model should evaluate exactly as the original"

# %% [markdown]
# ## Next steps
#
# - `02_evolve_your_own_loss.ipynb` searches for a loss of your own with CMA-ES and loads the
#   result with `TaylorLoss.from_file`.
# - `03_compare_methods.ipynb` benchmarks the learned loss against the robust losses of the
#   literature (GCE, SCE, NCE+RCE, bootstrapping, loss correction, ...) on a grid of noise
#   settings, and shows how to use your own data set and noise transition matrix.
