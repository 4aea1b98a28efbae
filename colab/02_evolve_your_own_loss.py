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
# # Evolve your own loss
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/tfrobust/tfrobust/blob/main/colab/02_evolve_your_own_loss.ipynb)
#
# `TaylorLoss` is a family of losses: a polynomial in the label and the predicted probability,
# fixed by eight numbers at order 3. tfrobust searches that family with CMA-ES, an evolution
# strategy: each generation proposes a population of coefficient vectors, trains a small model
# with each of them on the same noisy-label tasks, scores each by the *clean* validation
# accuracy its model reaches, and moves towards the best. This notebook runs a small search
# (about a minute), reads its log, plots its progress, loads the loss it found and trains with
# it, and ends with the commands that scale the same search out to GPUs, worker processes or a
# Ray cluster.

# %% [markdown]
# ## Install
#
# Colab already has TensorFlow and Keras; this installs tfrobust from GitHub. Skip it on a
# machine where tfrobust is installed.

# %% tags=["install"]
# !pip install "tfrobust @ git+https://github.com/tfrobust/tfrobust"

# %% [markdown]
# **Runtime.** The search below trains hundreds of tiny models, and CPU is fine for it: a whole
# generation trains at once as one population model. For searches over larger tasks choose a GPU
# runtime (*Runtime → Change runtime type → T4 GPU*); the search uses it without any change.
#
# ## Parameters
#
# The defaults are the library's default search (8 candidates per generation, 10 generations,
# the `default` task suite: digits with an MLP or a linear model under four noise settings).
# The tests run the notebook with the one-task `tiny` suite.

# %% tags=["parameters"]
POPULATION_SIZE = 8  # candidate losses per generation (CMA-ES lambda)
GENERATIONS = 10
TASK_SUITE = "default"  # "default", "tiny", "bundled" or the path of a JSON suite file
SEED = 0
EPOCHS = 20  # epochs of the final training with the evolved loss
OUTPUT_DIR = "tfrobust_outputs/02_evolve"

# %% [markdown]
# ## Imports
#
# `tfrobust.search.evolve` is the library behind the `python -m search.evolve` command:
# `SearchConfig` holds the settings of a run (the command's flags set the fields of the same
# names) and `run_search` runs it. Keras runs on its TensorFlow backend, which the search uses.

# %%
import json
import os
import pathlib

os.environ["KERAS_BACKEND"] = "tensorflow"

import keras
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from tfrobust import datasets, models
from tfrobust.losses import TaylorLoss
from tfrobust.search import evolve, tasks

OUTPUT_DIR = pathlib.Path(OUTPUT_DIR)

# %% [markdown]
# ## The tasks a candidate is scored on
#
# A task is data set × architecture × noise × training budget. Each generation draws
# `tasks_per_generation` tasks from the suite, and every candidate of that generation is
# trained on exactly the same task instances (same split, noisy labels, initial weights and
# batch order), so candidates are compared on equal terms. You can write your own suite as a
# JSON file (`{"name": ..., "tasks_per_generation": N, "tasks": [{"dataset": "mnist5k",
# "architecture": "mlp", "noise": "pairflip:0.3", "steps": 300}, ...]}`) and pass its path as
# `task_suite`.

# %%
suite = tasks.load_suite(TASK_SUITE)
print(f"suite {suite.name!r}: {suite.tasks_per_generation} of {len(suite.tasks)} tasks per generation")
for task in suite.tasks:
    print("  ", task.key)

# %% [markdown]
# ## Run the search
#
# The search starts from the `cross_entropy_taylor3` preset (the Taylor expansion of
# cross-entropy) with step size `sigma`, and writes everything to `output_dir`: the selected
# loss, a log line per candidate, a checkpoint after every generation and two plots.
# `resume=evolve.has_run(...)` makes this cell safe to run again: a finished search is not repeated, an
# interrupted one continues from its checkpoint, and raising `GENERATIONS` extends it.

# %%
config = evolve.SearchConfig(
    output_dir=str(OUTPUT_DIR),
    population_size=POPULATION_SIZE,
    generations=GENERATIONS,
    task_suite=TASK_SUITE,
    seed=SEED,
    resume=evolve.has_run(OUTPUT_DIR),  # continue the run there, if there is one
)
record = evolve.run_search(config).record

# %% [markdown]
# ## The log: one line per candidate
#
# `evaluations.jsonl` holds one JSON record per evaluated candidate: its generation, its
# coefficients, its accuracy on each task instance of the generation, its fitness (the mean of
# those accuracies) and its status (`ok`, or why it scored 0: its training diverged or its job
# failed). Here is the best candidate of the first generation.

# %%
with open(OUTPUT_DIR / "evaluations.jsonl") as handle:
    evaluations = [json.loads(line) for line in handle]
print(f"{len(evaluations)} evaluations")
first_generation = [e for e in evaluations if e["generation"] == 0]
print(json.dumps(max(first_generation, key=lambda e: e["fitness"]), indent=1))

# %% [markdown]
# Plot every candidate's fitness by generation, with the best and the mean of each generation.
# Each generation draws its own tasks, and some tasks are harder than others (60% symmetric
# noise on a linear model, say), so fitness jumps between generations; within a generation
# the candidates are directly comparable.

# %%
generations = np.array([e["generation"] + 1 for e in evaluations])
fitness = np.array([e["fitness"] for e in evaluations])
numbers = np.unique(generations)
figure, axis = plt.subplots(figsize=(7, 4))
axis.scatter(generations, fitness, s=12, alpha=0.5, label="candidate")
axis.plot(numbers, [fitness[generations == g].max() for g in numbers], marker="o", label="best")
axis.plot(numbers, [fitness[generations == g].mean() for g in numbers], marker=".", label="mean")
axis.set(xlabel="generation", ylabel="fitness (mean clean validation accuracy)",
         title="Every candidate of the search")
axis.xaxis.get_major_locator().set_params(integer=True)
axis.grid(alpha=0.3)
axis.legend()
figure.savefig(OUTPUT_DIR / "candidates.png", dpi=110)
plt.close(figure)
# Shown from the file rather than with plt.show(): the search's plotting switched matplotlib
# to its file-only backend, after which plt.show() shows nothing.
display(Image(filename=OUTPUT_DIR / "candidates.png"))

# %% [markdown]
# The run drew the same best and mean curves itself, in `fitness.png`.

# %%
display(Image(filename=OUTPUT_DIR / "fitness.png"))

# %% [markdown]
# ## The selected loss
#
# The best single score of a generation is partly luck of the draw of its tasks. So at the end
# the search re-scores its strongest candidates and the final CMA-ES mean on *every* task of the
# suite, and keeps the best of those: that loss is written to `best_coefficients.json` together
# with its provenance (command, seed, budget, fitness, machine). `run_search` also returns that
# record.

# %%
print("coefficients:", np.round(record["coefficients"], 3).tolist())
print("terms:       ", record["layout"])
for key in ("fitness", "fitness_definition", "search_best_fitness", "selected", "wall_time_s"):
    print(f"{key}: {record['provenance'][key]}")

# %% [markdown]
# `loss_curve.png` draws the selected loss against cross-entropy and mean absolute error, as a
# function of the probability the model gives the labelled class.

# %%
display(Image(filename=OUTPUT_DIR / "loss_curve.png"))

# %% [markdown]
# ## Train with the evolved loss
#
# `TaylorLoss.from_file` loads the coefficient file into an ordinary Keras loss. Train the
# same MLP with it and with cross-entropy on digits with 40% symmetric noise (a setting of the
# `default` suite, trained longer than the search's 150 steps), and compare clean test accuracy.
# A one-minute search on eight small tasks finds a loss tuned to those tasks; a loss meant for
# other data and models needs a larger suite and budget, such as the `bundled` search below.

# %%
evolved = TaylorLoss.from_file(OUTPUT_DIR / "best_coefficients.json")
data = datasets.load("digits", noise="symmetric:0.4", seed=SEED)

for name, loss in [("evolved TaylorLoss", evolved), ("cross-entropy", keras.losses.SparseCategoricalCrossentropy())]:
    keras.utils.set_random_seed(SEED)
    model = models.build_model("mlp", data.input_shape, data.num_classes, seed=SEED)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, batch_size=64, epochs=EPOCHS, verbose=0)
    _, accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)
    print(f"{name}: clean test accuracy {accuracy:.3f}")

# %% [markdown]
# ## Scaling out
#
# The same search runs from the command line in a clone of the repository (the `search/`
# scripts are not part of the pip package). The flags have the names of the `SearchConfig`
# fields, and a run writes the same files as above.
#
# ```bash
# git clone https://github.com/tfrobust/tfrobust && cd tfrobust
# pip install -e ".[gpu]"          # or ".[cpu]"; where TensorFlow is installed (Colab): pip install -e .
#
# # The default search (8 x 10, minutes on a laptop CPU):
# python -m search.evolve --output_dir=runs/evolve
#
# # The larger bundled suite (digits and MNIST-5k; linear, MLP and CNN models), each model
# # trained on all the machine's GPUs:
# python -m search.evolve --task_suite=bundled --population_size=16 --generations=40 \
#     --distribution_strategy=mirrored --output_dir=runs/bundled
#
# # Evaluation jobs in N worker processes on one machine:
# python -m search.evolve --task_suite=bundled --executor=processes --num_workers=4 --output_dir=runs/processes
#
# # Evaluation jobs on a Ray cluster (on the head node: ray start --head --port=6379):
# pip install -e ".[ray]"          # or: pip install "tfrobust[ray] @ git+https://github.com/tfrobust/tfrobust"
# python -m search.evolve --task_suite=bundled --executor=ray --ray_address=HOST:6379 --output_dir=runs/ray
#
# # Continue a run that was stopped, from its last checkpoint (same settings, same output_dir):
# python -m search.evolve --task_suite=bundled --population_size=16 --generations=40 \
#     --output_dir=runs/bundled --resume
# ```
#
# A resumed run ends with exactly the result of an uninterrupted one. From Python the same
# options are `SearchConfig(executor="processes", num_workers=4)`,
# `SearchConfig(executor="ray", ray_address="HOST:6379")` and
# `SearchConfig(distribution_strategy="mirrored")`. Then compare your loss with the baselines in
# `03_compare_methods.ipynb`: the benchmark takes it as the method
# `taylor_file:runs/bundled/best_coefficients.json`.
