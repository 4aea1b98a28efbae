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
# # Find the wrong labels in your data set
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tfrobust/tfrobust/blob/main/colab/06_find_label_issues.ipynb)
#
# Which of your labels are wrong? `tfrobust.label_issues.find_label_issues` answers without any
# clean labels: it trains your model K times, each time on all folds but one, with a
# noise-robust loss (the pretrained `TaylorLoss` by default), so every example gets predicted
# probabilities from a model that never saw its label. Confident learning (Northcutt et al.,
# JAIR 2021) then estimates how many labels of each class are really some other class and flags
# the examples whose probabilities point away from their label most strongly. This notebook
# corrupts the labels of a small image data set on purpose, so we can check what the finder
# flags against the truth, looks at the flagged images, and retrains without them.

# %% [markdown]
# ## Install
#
# Colab already has TensorFlow and Keras; this installs tfrobust from GitHub. Skip it on a
# machine where tfrobust is installed.

# %% tags=["install"]
# !pip install "tfrobust @ git+https://github.com/tfrobust/tfrobust"

# %% [markdown]
# ## Parameters
#
# The data set (8×8 digits, bundled), the label noise we inject, the number of folds and the
# epochs of each training. The tests run the notebook with two folds, two epochs and 400 examples.

# %% tags=["parameters"]
DATASET = "digits"
NOISE = "pairflip:0.3"
NUM_FOLDS = 3
EPOCHS = 15
MAX_EXAMPLES = None
OUTPUT_DIR = "tfrobust_outputs/06_label_issues"

# %% [markdown]
# ## Noisy labels
#
# `datasets.load` corrupts the training labels with the noise we ask for and keeps the true ones
# beside them (`y_train_clean`), which a real data set would not give you; we use them only to
# score the finder. Pair-flip noise moves each corrupted label to the next class.

# %%
import pathlib

import keras
import numpy as np
from IPython.display import Image, display

from tfrobust import _io, datasets, label_issues, label_issues_benchmark, models

OUTPUT_DIR = pathlib.Path(OUTPUT_DIR)
data = datasets.load(DATASET, noise=NOISE, validation_fraction=0.0, seed=0, max_examples=MAX_EXAMPLES)
print(f"{len(data.y_train)} training examples, {data.is_corrupted.mean():.1%} of their labels wrong")

# %% [markdown]
# ## Find the label issues
#
# `model_fn` returns a fresh, uncompiled Keras model; the finder compiles it with the loss and
# trains one per fold, printing each fold's rate and the time left. Any Keras model works, and
# `x` may be a `tf.data.Dataset` (or a TFDS split, with `as_supervised=True` or dict elements)
# instead of numpy arrays.

# %%
def model_fn():
    return models.build_model("mlp", data.input_shape, data.num_classes)


result = label_issues.find_label_issues(model_fn, data.x_train, data.y_train, num_folds=NUM_FOLDS,
                                        epochs=EPOCHS)
print(f"flagged {result.is_label_issue.sum()} examples; "
      f"estimated noise rate {result.estimated_noise_rate:.1%}")

# %% [markdown]
# ## How good are the flags?
#
# Against the injected truth: precision (how many flagged labels really are wrong), recall (how
# many wrong labels were flagged), and AUROC of the label-quality score (how well it ranks wrong
# labels before right ones; 0.5 is chance).

# %%
scores = label_issues_benchmark.detection_metrics(data.is_corrupted, result.is_label_issue, result.label_quality)
print(", ".join(f"{name} {value:.3f}" for name, value in scores.items() if name in
                ("precision", "recall", "f1", "auroc")))

# %% [markdown]
# The label-quality score (the held-out probability of the given label) separates the two kinds
# of example: wrong labels sit near 0.

# %%
figure, axis = _io.new_figure((6, 3.5))
bins = np.linspace(0, 1, 26)
axis.hist(result.label_quality[~data.is_corrupted], bins=bins, alpha=0.6, label="label right")
axis.hist(result.label_quality[data.is_corrupted], bins=bins, alpha=0.6, label="label wrong")
axis.set_xlabel("label quality: out-of-fold p(given label)")
axis.set_ylabel("examples")
axis.legend()
figure.tight_layout()
_io.save_figure(figure, OUTPUT_DIR / "label_quality.png")
display(Image(filename=OUTPUT_DIR / "label_quality.png"))

# %% [markdown]
# ## The most likely mislabelled images
#
# Each title reads *given → predicted* label; green marks a label that really is wrong, red one
# the finder flagged although it was right. With your own data you would look through this grid
# and fix or drop the labels.

# %%
label_issues.plot_label_issues(data.x_train, result, OUTPUT_DIR / "top_flagged.png", count=24,
                               true_labels=data.y_train_clean)
display(Image(filename=OUTPUT_DIR / "top_flagged.png"))

# %% [markdown]
# ## Retrain without them
#
# The payoff: drop the flagged examples and train with plain cross-entropy, beside
# cross-entropy on all the noisy labels. Accuracy is on the clean test split.

# %%
def clean_test_accuracy(x, y):
    keras.utils.set_random_seed(0)
    model = model_fn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=EPOCHS, batch_size=64, verbose=0)
    return model.evaluate(data.x_test, data.y_test, verbose=0)[1]


keep = ~result.is_label_issue
print(f"CE on all noisy labels: clean test accuracy {clean_test_accuracy(data.x_train, data.y_train):.3f}")
print(f"CE with the flagged removed: clean test accuracy "
      f"{clean_test_accuracy(data.x_train[keep], data.y_train[keep]):.3f}")

# %% [markdown]
# ## Next
#
# `python -m search.label_issues` runs this comparison over six noise settings and sets the
# finder beside cleanlab's `find_label_issues` fed cross-entropy probabilities of the same model.
