"""Data selection: train on a weighted subset of the data that is re-chosen as training goes.

  AdaCore           Adaptive second-order coresets (Pooladzandi et al., ICML
                    2022): per-class greedy facility location on
                    Hessian-preconditioned logit gradients, weighted by
                    cluster size; a Keras callback with `dataset()` for `fit`.
  RandomSubset      The stratified random subset of the same size (baseline).
  SubsetSchedule    The base class: a callback that re-chooses `indices` and
                    `weights` every few epochs and the `tf.data` batches that
                    read them.
  facility_location Greedy facility location (CRAIG's coreset objective).
  speed             Accuracy against training time: full data, AdaCore and
                    random subsets (`python -m search.adacore_speed`).
"""

from tfrobust.selection import facility_location
from tfrobust.selection._subset import RandomSubset
from tfrobust.selection._subset import SubsetSchedule
from tfrobust.selection._subset import class_budgets
from tfrobust.selection.adacore import AdaCore
from tfrobust.selection.adacore import CurvatureAverage
from tfrobust.selection.adacore import logit_gradients
from tfrobust.selection.adacore import logit_hessian_diagonal
