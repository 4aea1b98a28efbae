"""How long a benchmark grid will take: a cost model of one run on a 2-core CPU."""

from tfrobust import datasets
from tfrobust import models
from tfrobust.benchmark import _methods

# Cost model fitted to runs on a 2-core CPU (TensorFlow 2.21): a fixed cost per
# run (model, tracing), per training step, per epoch (evaluation calls), and a
# throughput for the FLOPs of training and evaluation.
_SECONDS_PER_RUN = 0.7
_SECONDS_PER_STEP = 0.001
_SECONDS_PER_EPOCH = 0.04
_FLOPS_PER_SECOND = 60e9

_SPLIT_SIZES = {}


def _split_sizes(dataset, max_examples, data_dir=None, imbalance="none"):
    """(train, test, input shape, classes) of a data set, read once per process."""
    key = (dataset, max_examples, data_dir, imbalance)
    if key not in _SPLIT_SIZES:
        data = datasets.load(dataset, max_examples=max_examples, data_dir=data_dir, imbalance=imbalance)
        _SPLIT_SIZES[key] = (len(data.y_train), len(data.y_test), data.input_shape, data.num_classes)
    return _SPLIT_SIZES[key]


def estimate_run_seconds(run, data_dir=None):
    """Estimated seconds of one run (a `RunSpec`) on a 2-core CPU (see the cost-model constants;
    a method's training steps are scaled by its `relative_step_cost`)."""
    num_train, num_test, input_shape, num_classes = _split_sizes(run.dataset, run.max_examples, data_dir,
                                                                 run.imbalance)
    step_cost = _methods.get_method(run.method).relative_step_cost
    training_flops = models.training_flops_per_example(run.architecture, input_shape, num_classes)
    steps = -(-num_train // run.batch_size)
    # Training is 3 forward passes per example; evaluation one per training and test example.
    flops = training_flops * (step_cost * num_train + (num_train + num_test) / 3)
    per_epoch = step_cost * steps * _SECONDS_PER_STEP + _SECONDS_PER_EPOCH + flops / _FLOPS_PER_SECOND
    return _SECONDS_PER_RUN + run.epochs * per_epoch


def estimate_seconds(runs, data_dir=None):
    """Estimated seconds of all `runs` (see `estimate_run_seconds`)."""
    return sum(estimate_run_seconds(run, data_dir) for run in runs)


def format_duration(seconds):
    """"42s", "3m07s" or "2h05m"."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
