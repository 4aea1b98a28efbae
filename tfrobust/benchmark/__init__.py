"""Benchmark of training methods under label noise (the library behind `python -m search.benchmark`).

Every run trains one model (dataset x architecture) with one method under
one noise setting and one seed, and measures accuracy against the CLEAN test
labels. Runs with the same seed share the data split, the noisy labels, the
initial weights and the order of the training batches whatever the method
(common random numbers), so methods are compared on equal terms.

Where things live (each a private module; the names below are the public face):
  _methods   `Method`, `LossMethod`, `NoiseContext` and the method registry
             (`register_method`, `get_method`, ...): how to add a method is
             described at the top of that module.
  _reweighting_methods
             The re-weighting, sample-selection and imbalance methods (l2rw,
             mwn, absgd, absgd_imbalance, bare, mentornet_pd, ldam_drw), with
             their defaults; out of `default_methods()`.
  _costs     The per-step cost of each method relative to a plain CE step
             (`measure_step_costs`, `python -m search.method_costs`).
  _config    `PRESETS`, `BenchmarkConfig` (the grid) and `RunSpec` (one run).
  _runner    `run_one` and `run_benchmark` (resumable), with progress lines.
  _estimate  The run-time cost model (`estimate_seconds`).
  _results   results.csv and curves.jsonl: field names, reading (whole rows
             only), writing.
  _tables, _plots, _report
             results.md (`summarize`) and the figures (`write_report`).
  _model_selection
             How well susceptibility picks models without clean labels
             (`model_selection_report`, `python -m search.model_selection`).
  _verdict   Issue 10's rule for shipping a searched loss as the default
             (`shipping_verdict`, `python -m search.heldout_verdict`), and
             whether one grid ranks methods as another does (`grid_agreement`,
             `python -m search.grid_agreement`).
The per-epoch metrics (`EpochMetrics`, `memorisation_metrics`) are
evaluation, not benchmark: they live in `tfrobust.metrics`.

Outputs in `BenchmarkConfig.output_dir`:
  results.csv               one row per run, rewritten atomically after every run,
                            with the git revision (and dirty flag) it was produced at
  curves.jsonl              per-epoch test accuracy and memorisation of every run
                            (and susceptibility zeta with `susceptibility=True`)
  results.md                mean ± std tables naming the revision(s) of their rows
                            (`summarize(csv_path)` rebuilds it)
  accuracy_vs_noise.png     final test accuracy against the symmetric noise rate
  memorisation_<dataset>_<architecture>.png
                            share of corrupted training examples predicted with
                            their noisy label, per epoch and method
  models/<run_id>.keras     the trained models, with `save_models=True`

Rerunning the same configuration skips the runs already whole in
results.csv, so a stopped benchmark resumes where it stopped; a torn row is
trained again, never taken as done.
"""

from tfrobust.benchmark._config import ALL_NOISE
from tfrobust.benchmark._config import KEY_FIELDS
from tfrobust.benchmark._config import PRESETS
from tfrobust.benchmark._config import BenchmarkConfig
from tfrobust.benchmark._config import RunSpec
from tfrobust.benchmark._config import describe_preset
from tfrobust.benchmark._estimate import estimate_run_seconds
from tfrobust.benchmark._estimate import estimate_seconds
from tfrobust.benchmark._estimate import format_duration
from tfrobust.benchmark._methods import TAYLOR_FILE_PREFIX
from tfrobust.benchmark._methods import TAYLOR_PRESET_PREFIX
from tfrobust.benchmark._methods import LossMethod
from tfrobust.benchmark._methods import Method
from tfrobust.benchmark._methods import NoiseContext
from tfrobust.benchmark._methods import canonical_method_name
from tfrobust.benchmark._methods import default_methods
from tfrobust.benchmark._methods import describe_method_names
from tfrobust.benchmark._methods import get_method
from tfrobust.benchmark._methods import method_names
from tfrobust.benchmark._methods import register_method
from tfrobust.benchmark._reweighting_methods import META_PER_CLASS
from tfrobust.benchmark._reweighting_methods import meta_set
from tfrobust.benchmark import _selection_methods  # noqa: F401  (registers adacore)
from tfrobust.benchmark._plots import plot_accuracy_vs_noise
from tfrobust.benchmark._plots import plot_memorisation
from tfrobust.benchmark._report import ACCURACY_PLOT
from tfrobust.benchmark._report import RESULTS_MD
from tfrobust.benchmark._report import write_report
from tfrobust.benchmark._results import CSV_FIELDS
from tfrobust.benchmark._results import CURVES
from tfrobust.benchmark._results import PROVENANCE_FIELDS
from tfrobust.benchmark._results import RESULT_FIELDS
from tfrobust.benchmark._results import RESULTS_CSV
from tfrobust.benchmark._results import append_curves
from tfrobust.benchmark._results import is_whole_row
from tfrobust.benchmark._results import partition_results
from tfrobust.benchmark._results import read_curves
from tfrobust.benchmark._results import read_results
from tfrobust.benchmark._results import write_results
from tfrobust.benchmark._runner import BenchmarkResult
from tfrobust.benchmark._runner import run_benchmark
from tfrobust.benchmark._runner import run_one
from tfrobust.benchmark._tables import SUMMARY_METRICS
from tfrobust.benchmark._tables import summarize
from tfrobust.benchmark._costs import COSTS_MD
from tfrobust.benchmark._costs import StepCost
from tfrobust.benchmark._costs import costs_table
from tfrobust.benchmark._costs import measure_step_costs
from tfrobust.benchmark._model_selection import GroupSelection
from tfrobust.benchmark._model_selection import candidate_models
from tfrobust.benchmark._model_selection import model_selection_report
from tfrobust.benchmark._config import HELDOUT_METHODS
from tfrobust.benchmark._verdict import Verdict
from tfrobust.benchmark._verdict import Agreement
from tfrobust.benchmark._verdict import compare_candidates
from tfrobust.benchmark._verdict import grid_agreement
from tfrobust.benchmark._verdict import grid_name
from tfrobust.benchmark._verdict import plot_agreement
from tfrobust.benchmark._verdict import plot_verdict
from tfrobust.benchmark._verdict import read_grid
from tfrobust.benchmark._verdict import search_facts
from tfrobust.benchmark._verdict import shipping_verdict
