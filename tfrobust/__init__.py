"""tfrobust: learning with noisy labels in Keras 3 / TensorFlow.

Submodules:
  losses    TaylorLoss (the searchable loss family) and robust-loss baselines.
  noise     Label-noise injection (symmetric, pair-flip, transition matrix,
            instance-dependent).
  datasets  Train / validation / test splits with noisy training labels,
            from bundled real data or any prepared TFDS dataset.
  models    Small task architectures (MLP, CNN) used by the search and the
            benchmark.
  search    The CMA-ES loss search (evolve), its tasks, evaluators,
            population models (a generation trained as one model), preset
            tooling and throughput benchmark; `python -m search.evolve`,
            `search.make_presets` and `search.throughput` wrap it.
  benchmark The method x noise benchmark behind `python -m search.benchmark`.
  plotting  Losses plotted against the true-class probability.
  distribute  The one function that maps a strategy name to tf.distribute.
"""

__version__ = "0.1.0"

from tfrobust import losses  # noqa: F401  (registers the serializable losses)
