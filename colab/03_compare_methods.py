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
# # Compare methods for learning with noisy labels
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tfrobust/tfrobust/blob/main/colab/03_compare_methods.ipynb)
#
# tfrobust's benchmark trains the same model with each method on the same noisy data (same
# split, same corrupted labels, same initial weights, same batch order for every method, seed
# by seed), measures accuracy on *clean* test labels after every epoch, and writes a table of
# mean ± std over seeds and plots of accuracy and memorisation. This notebook runs a small grid
# of losses and noise settings (a few minutes), shows the table and plots it produces, then
# brings your own noise, as a transition matrix saved to a file, and your own data, as any
# TensorFlow Datasets classification data set.

# %% [markdown]
# ## Install
#
# Colab already has TensorFlow and Keras; this installs tfrobust from GitHub. Skip it on a
# machine where tfrobust is installed.

# %% tags=["install"]
# !pip install "tfrobust @ git+https://github.com/tfrobust/tfrobust"

# %% [markdown]
# **Runtime.** The default grid (small MLPs on 8×8 digits) runs on the CPU runtime. For the
# CIFAR-10 section at the end choose a GPU runtime (*Runtime → Change runtime type → T4 GPU*):
# the CNN trains several times faster there.
#
# ## Parameters
#
# The grid: methods × data sets × architectures × noise settings × seeds. Method names are the
# benchmark's (`benchmark.method_names()`), plus `taylor` for `TaylorLoss.pretrained()`. The
# tests run the notebook with two methods, one noise setting, one seed and two epochs.

# %% tags=["parameters"]
METHODS = ["ce", "gce", "sce", "nce_rce", "mae", "taylor"]
DATASETS = ["digits"]
ARCHITECTURES = ["mlp"]
NOISE = ["none", "symmetric:0.4", "pairflip:0.4"]
SEEDS = [0, 1]
EPOCHS = 20
OUTPUT_DIR = "tfrobust_outputs/03_compare"
# Your own TFDS data set (the last section): its name, where it is prepared (None: TFDS's
# default, ~/tensorflow_datasets), whether to download it now, and how many examples to read.
TFDS_NAME = "cifar10"
TFDS_DATA_DIR = None
TFDS_DOWNLOAD = False
TFDS_MAX_EXAMPLES = 5000

# %% [markdown]
# ## Imports
#
# `tfrobust.benchmark` is the library behind the `python -m search.benchmark` command:
# `BenchmarkConfig` holds the grid and `run_benchmark` trains it. TensorFlow Datasets reads its
# default data directory once, when it is first imported, and the benchmark loads TFDS data
# sets from there, so a custom `TFDS_DATA_DIR` is set before anything imports TFDS. Keras runs on
# its TensorFlow backend, which the benchmark uses.

# %%
import os
import pathlib

os.environ["KERAS_BACKEND"] = "tensorflow"
if TFDS_DATA_DIR:
    os.environ["TFDS_DATA_DIR"] = os.path.expanduser(TFDS_DATA_DIR)

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, Markdown, display

from tfrobust import benchmark, datasets

OUTPUT_DIR = pathlib.Path(OUTPUT_DIR)
OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
print("methods available:", ", ".join(benchmark.method_names()), "and taylor, taylor:<preset>, taylor_file:<path>")

# %% [markdown]
# ## Run the grid
#
# `run_benchmark` prints each run as it finishes, with its clean test accuracy and the share of
# corrupted training examples it predicts with their noisy (wrong) label. Results go to
# `OUTPUT_DIR` after every run; running the cell again skips the runs already in
# `results.csv`, so an interrupted benchmark continues where it stopped.

# %%
config = benchmark.BenchmarkConfig(
    output_dir=str(OUTPUT_DIR),
    methods=tuple(METHODS),
    datasets=tuple(DATASETS),
    architectures=tuple(ARCHITECTURES),
    noise=tuple(NOISE),
    seeds=tuple(SEEDS),
    epochs=EPOCHS,
)
result = benchmark.run_benchmark(config)

# %% [markdown]
# ## The table
#
# `results.md` has one section per data set and architecture, with methods as rows and noise
# settings as columns: final clean test accuracy, best clean test accuracy over the epochs,
# and memorisation (the share of corrupted training examples predicted with their noisy label,
# lower is better). The best mean of each column is in bold. `results.csv` has one row per run
# with every setting and measurement, for your own analysis.

# %%
display(Markdown((OUTPUT_DIR / "results.md").read_text()))

# %% [markdown]
# ## The plots
#
# `accuracy_vs_noise.png` draws final clean test accuracy against the symmetric noise rate, a
# line per method; `memorisation_<dataset>_<architecture>.png` draws memorisation epoch by
# epoch, a panel per noise setting: the higher a method's curve, the more wrong labels it has
# learned by heart.

# %%
for name, path in result.report.items():
    if path.endswith(".png"):
        print(name)
        display(Image(filename=path))

# %% [markdown]
# ## Your own noise: a transition matrix
#
# Class-conditional label noise is described by a transition matrix T, where `T[i, j]` is the
# probability that an example of class i is labelled j. Real noise is rarely symmetric: some
# classes get confused with particular others. Here is a matrix for digits that look alike
# (7 labelled 1, 3 labelled 8, and so on), saved as a `.npy` file (`.csv` and `.json` work
# too). The noise setting `matrix:<path>` draws the training labels from it.

# %%
confusions = [(7, 1, 0.4), (1, 7, 0.2), (3, 8, 0.4), (8, 3, 0.2), (5, 6, 0.3), (4, 9, 0.4), (9, 4, 0.3)]
transition_matrix = np.eye(10)
for clean, noisy, rate in confusions:
    transition_matrix[clean, clean] -= rate
    transition_matrix[clean, noisy] = rate
matrix_path = OUTPUT_DIR / "confusable_digits.npy"
np.save(matrix_path, transition_matrix)
matrix_noise = f"matrix:{matrix_path}"

data = datasets.load("digits", noise=matrix_noise, seed=0)
print(data)

# %% [markdown]
# Labels are drawn independently, so the matrix realised on the training split differs from T by
# sampling error; `data.noisy_labels.transition_matrix` holds the realised one. Both side by
# side:

# %%
figure, axes = plt.subplots(1, 2, figsize=(9, 4))
for axis, matrix, title in [(axes[0], transition_matrix, "T (requested)"),
                            (axes[1], data.noisy_labels.transition_matrix, "realised on the training split")]:
    image = axis.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    axis.set(title=title, xlabel="noisy label", ylabel="clean label", xticks=range(10), yticks=range(10))
figure.colorbar(image, ax=axes, shrink=0.8)
figure.savefig(OUTPUT_DIR / "transition_matrix.png", dpi=110, bbox_inches="tight")
plt.close(figure)
# Shown from the file rather than with plt.show(): the benchmark's plotting switched matplotlib
# to its file-only backend, after which plt.show() shows nothing.
display(Image(filename=OUTPUT_DIR / "transition_matrix.png"))

# %% [markdown]
# Now benchmark the same methods under this noise, adding forward loss correction (Patrini et
# al., CVPR 2017), which is given the true T: the "known T" setting, an upper bound for methods
# that have to estimate it. Writing into the same `OUTPUT_DIR` keeps the runs above, so the
# table gains a column for the new noise setting.

# %%
matrix_config = benchmark.BenchmarkConfig(
    output_dir=str(OUTPUT_DIR),
    methods=tuple(METHODS) + ("forward",),
    datasets=("digits",),
    architectures=tuple(ARCHITECTURES),
    noise=(matrix_noise,),
    seeds=tuple(SEEDS),
    epochs=EPOCHS,
)
matrix_result = benchmark.run_benchmark(matrix_config)
display(Markdown((OUTPUT_DIR / "results.md").read_text()))

# %% [markdown]
# ## Your own data: any TensorFlow Datasets classification data set
#
# Besides the two data sets that ship with tfrobust (`digits`, `mnist5k`), `datasets.load`
# reads any *prepared* TFDS classification data set, and never downloads anything unless asked
# to. Prepare one on a machine with network access:
#
# ```bash
# pip install tensorflow-datasets
# tfds build cifar10 --data_dir=~/tensorflow_datasets
# ```
#
# and copy that directory to where you train, or pass `download=True` (set `TFDS_DOWNLOAD =
# True` above; CIFAR-10 is 170 MB, a couple of minutes on Colab). When the data set is not
# prepared, the error says how to prepare it.

# %%
try:
    own_data = datasets.load(TFDS_NAME, noise="symmetric:0.4", seed=0, data_dir=TFDS_DATA_DIR,
                             download=TFDS_DOWNLOAD, max_examples=TFDS_MAX_EXAMPLES)
    print(own_data)
except FileNotFoundError as error:
    own_data = None
    print(error)

# %% [markdown]
# Once it is prepared, the data set's name goes into the benchmark like any other. Here a small
# CNN on the first `TFDS_MAX_EXAMPLES` training images, cross-entropy against the pretrained
# TaylorLoss (this cell does nothing until the data set loads above).

# %%
if own_data is not None:
    own_config = benchmark.BenchmarkConfig(
        output_dir=str(OUTPUT_DIR / TFDS_NAME),
        methods=("ce", "taylor"),
        datasets=(TFDS_NAME,),
        architectures=("cnn",),
        noise=("symmetric:0.4",),
        seeds=(0,),
        epochs=EPOCHS,
        max_examples=TFDS_MAX_EXAMPLES,
    )
    own_result = benchmark.run_benchmark(own_config)
    display(Markdown((OUTPUT_DIR / TFDS_NAME / "results.md").read_text()))

# %% [markdown]
# ## From the command line
#
# The same benchmark runs from a clone of the repository, one flag per `BenchmarkConfig` field;
# `--preset=full` is the grid of the README table and `--dry_run` prints a grid's size and its
# estimated time without training:
#
# ```bash
# python -m search.benchmark --methods=ce,gce,sce,taylor --noise=none,symmetric:0.4,matrix:T.npy \
#     --seeds=0,1,2 --output_dir=runs/benchmark
# python -m search.benchmark --preset=full --dry_run
# ```
#
# A loss you evolved yourself (see `02_evolve_your_own_loss.ipynb`) joins the grid as the
# method `taylor_file:<path to best_coefficients.json>`.
