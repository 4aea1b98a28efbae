"""tfrobust: learning with noisy labels in Keras 3 / TensorFlow.

The modules follow the flow data -> model -> loss / training method ->
evaluation -> search:

  datasets     Train / validation / test splits with noisy (and optionally
               long-tailed) training labels, from bundled real data or any
               prepared TFDS dataset; `NoisyDataset.meta_split` carves a clean
               meta set.
  episodes     N-way K-shot few-shot episodes by disjoint class splits, with
               noisy support / query labels (for MAML / NestedMAML).
  noise        Label-noise injection (symmetric, pair-flip, transition
               matrix, instance-dependent).
  imbalance    Long-tailed and step class profiles; balanced and per-class
               accuracy.
  groups       A grouped task (a minority of intensity-inverted images) and
               per-group / worst-group accuracy, for fairness-aware training.
  models       Small task architectures (MLP, CNN) for the search and the
               benchmark.
  layers       Layers some methods need (the cosine classifier head of LDAM).
  optimizers   The one place an optimizer name becomes a Keras optimizer.
  losses       TaylorLoss (the searchable loss family), robust-loss
               baselines, and batch re-weighting / imbalance losses.
  reweighting  Meta-learned re-weighting trainers (keras.Model wrappers with
               their own train_step) that learn from a clean meta set.
  selection    Training on re-chosen weighted subsets: AdaCore coresets and
               random subsets, as a callback and `tf.data` batches for `fit`.
  metrics      Clean accuracy and memorisation metrics; the EpochMetrics
               callback.
  label_issues Which training labels are wrong: K-fold out-of-fold
               probabilities from a robust loss, then confident learning;
               `label_issues_benchmark` scores it against cleanlab
               (`python -m search.label_issues`).
  plotting     Losses plotted against the true-class probability.
  distribute   The one function that maps a strategy name to tf.distribute.
  fewshot_benchmark  MAML vs NestedMAML on noisy episodes
               (`python -m search.fewshot_benchmark`).
  benchmark    The method x data x noise benchmark behind
               `python -m search.benchmark` (a package: methods, config,
               runner, results, report).
  fairness_benchmark, imbalance_study
               CE vs L2RW / FORML on the grouped task, and L2RW's MNIST
               4-vs-9 class-imbalance experiment (`python -m
               search.fairness_benchmark`, `search.l2rw_imbalance`).
  search       The CMA-ES loss search (evolve), its tasks, population
               evaluator, checkpoints, presets tooling and throughput
               benchmark; `python -m search.evolve` wraps it.
"""

__version__ = "0.1.0"

from tfrobust import losses  # noqa: F401  (registers the serializable losses)
