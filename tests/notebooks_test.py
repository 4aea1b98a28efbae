"""The tutorials in colab/: each runs top to bottom offline with tiny settings, draws its figures,
keeps the shape of a tutorial, and its .ipynb holds exactly the cells of its paired jupytext .py.

Each notebook executes in a fresh kernel through papermill, which injects the tiny settings
after the cell tagged "parameters"; cells tagged "install" (pip install from GitHub) are
dropped first, since CI has no network and tfrobust is installed already. Executed copies and
every file the notebooks write go to tmp_path: the committed .ipynb files stay without outputs.
"""

import pathlib
import re

import jupytext
import nbformat
import papermill
import pytest

COLAB = pathlib.Path(__file__).resolve().parent.parent / "colab"
NOTEBOOKS = sorted(path.stem for path in COLAB.glob("*.ipynb"))

# Settings that make each notebook run in seconds; the figures it must then have written into
# its OUTPUT_DIR; a line it must have printed.
TINY = {
    "01_quickstart": {"EPOCHS": 2},
    "02_evolve_your_own_loss": {"POPULATION_SIZE": 4, "GENERATIONS": 2, "TASK_SUITE": "tiny", "EPOCHS": 2},
    "03_compare_methods": {"METHODS": ["ce", "taylor"], "NOISE": ["symmetric:0.4"], "SEEDS": [0], "EPOCHS": 2},
    "04_reweighting": {"EPOCHS": 1, "MAX_TRAIN_EXAMPLES": 1000},
    "05_imbalance": {"EPOCHS": 2},
    "06_find_label_issues": {"EPOCHS": 2, "NUM_FOLDS": 2, "MAX_EXAMPLES": 400},
}
FIGURES = {
    "01_quickstart": {"memorisation_ce.png", "memorisation_ce_vs_taylor.png", "loss_curves.png"},
    "02_evolve_your_own_loss": {"candidates.png", "fitness.png", "loss_curve.png"},
    "03_compare_methods": {"accuracy_vs_noise.png", "memorisation_digits_mlp.png", "transition_matrix.png"},
    "04_reweighting": {"weight_function.png", "example_weights.png", "test_accuracy.png"},
    "05_imbalance": {"class_counts.png", "per_class_accuracy.png"},
    "06_find_label_issues": {"label_quality.png", "top_flagged.png"},
}
PRINTED = {
    "01_quickstart": "reloaded loss: TaylorLoss",
    "02_evolve_your_own_loss": "evolved TaylorLoss: clean test accuracy",
    # run with an empty TFDS directory: the notebook must say how to prepare the data set
    "03_compare_methods": "tfds build cifar10",
    "04_reweighting": "Meta-Weight-Net: clean test accuracy",
    "05_imbalance": "LDAM-DRW: balanced test accuracy",
    "06_find_label_issues": "CE with the flagged removed: clean test accuracy",
}


def _tags(cell):
    return set(cell.metadata.get("tags", []))


def _cells(notebook):
    """(type, source, tags) of every cell: what a .py / .ipynb pair must agree on."""
    return [(cell.cell_type, cell.source, sorted(_tags(cell))) for cell in notebook.cells]


def test_there_are_at_least_three_tutorials_each_with_tiny_settings():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS
    assert set(NOTEBOOKS) == set(TINY) == set(FIGURES) == set(PRINTED)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_ipynb_and_py_are_a_synced_pair_without_outputs(name):
    ipynb_path, py_path = COLAB / f"{name}.ipynb", COLAB / f"{name}.py"
    assert py_path.exists(), f"{ipynb_path.name} has no paired jupytext source {py_path.name}"
    ipynb, py = jupytext.read(ipynb_path), jupytext.read(py_path)
    assert _cells(ipynb) == _cells(py), f"run `jupytext --sync colab/{name}.py` to bring the pair in line"
    raw = nbformat.read(ipynb_path, as_version=4)
    for cell in raw.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{ipynb_path.name} is committed with outputs; clear them (jupytext --to ipynb {py_path.name})"
            )


def test_every_py_tutorial_has_an_ipynb():
    assert sorted(path.stem for path in COLAB.glob("*.py")) == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_tutorial_shape(name):
    """Title, Colab badge, install cell, parameters cell, and prose above every code cell."""
    cells = jupytext.read(COLAB / f"{name}.py").cells
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), "no title"
    badge = f"https://colab.research.google.com/github/tfrobust/tfrobust/blob/main/colab/{name}.ipynb"
    assert badge in cells[0].source, "no Open in Colab badge for this notebook"
    install = [cell for cell in cells if "install" in _tags(cell)]
    assert len(install) == 1 and re.search(r"pip install .*tfrobust @ git\+https://", install[0].source)
    assert sum("parameters" in _tags(cell) for cell in cells) == 1
    for previous, cell in zip(cells, cells[1:]):
        if cell.cell_type == "code":
            assert previous.cell_type == "markdown", f"no prose above the code cell:\n{cell.source}"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_offline_with_tiny_settings(name, tmp_path):
    notebook = nbformat.read(COLAB / f"{name}.ipynb", as_version=4)
    notebook.cells = [cell for cell in notebook.cells if "install" not in _tags(cell)]
    source = tmp_path / f"{name}.ipynb"
    nbformat.write(notebook, source)
    output_dir = tmp_path / "outputs"
    parameters = {**TINY[name], "OUTPUT_DIR": str(output_dir)}
    if name == "03_compare_methods":
        parameters["TFDS_DATA_DIR"] = str(tmp_path / "tensorflow_datasets")

    executed = papermill.execute_notebook(
        str(source), str(tmp_path / f"{name}.executed.ipynb"), parameters=parameters, cwd=str(tmp_path),
        kernel_name="python3", progress_bar=False,
    )

    written = {path.name for path in output_dir.rglob("*.png")}
    assert FIGURES[name] <= written, f"missing figures: {FIGURES[name] - written}"
    images = [
        output for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert len(images) >= len(FIGURES[name]), f"only {len(images)} figures shown"
    text = "\n".join(
        output.get("text", "") for cell in executed.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert PRINTED[name] in text
