"""Task suites: every field of a suite file is checked before a search starts, each error naming the field."""

import dataclasses
import json

import numpy as np
import pytest

from tfrobust.search import tasks

GOOD_TASK = {"dataset": "digits", "architecture": "mlp", "noise": "symmetric:0.4", "steps": 10}


def _suite(tmp_path, **spec):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_a_good_suite_file_loads_with_its_fields(tmp_path):
    path = _suite(tmp_path, name="mine", tasks_per_generation=1, fitness_split="noisy",
                  tasks=[GOOD_TASK, {**GOOD_TASK, "optimizer": "momentum", "learning_rate": 0.05}])
    suite = tasks.load_suite(path)
    assert (suite.name, suite.tasks_per_generation, suite.fitness_split) == ("mine", 1, "noisy")
    assert suite.tasks[1].optimizer == "momentum" and suite.tasks[1].steps == 10
    assert len(suite.draw(0, 0)) == 1


@pytest.mark.parametrize("spec, message", [
    ({"tasks": [GOOD_TASK], "tasks_per_generation": 0}, "'tasks_per_generation' must be a positive integer"),
    ({"tasks": [GOOD_TASK], "tasks_per_generation": -1}, "'tasks_per_generation' must be a positive integer"),
    ({"tasks": [GOOD_TASK], "tasks_per_generation": "2"}, "'tasks_per_generation' must be a positive integer"),
    ({"tasks": []}, "'tasks' must be a non-empty list"),
    ({"task": [GOOD_TASK]}, r"unknown field\(s\) \['task'\]"),
    ({"tasks": [GOOD_TASK], "fitness_split": "test"}, "'fitness_split' must be one of"),
    ({"tasks": [{**GOOD_TASK, "steps": 0}]}, r"tasks\[0\]: Task field 'steps' must be a positive integer"),
    ({"tasks": [{**GOOD_TASK, "optimizer": "sgdm"}]}, r"tasks\[0\]: Task field 'optimizer': unknown"),
    ({"tasks": [{**GOOD_TASK, "learning_rate": 0}]}, "'learning_rate' must be a positive number"),
    ({"tasks": [{**GOOD_TASK, "architecture": "resnet"}]}, r"tasks\[0\]: Unknown architecture 'resnet'"),
    ({"tasks": [{"dataset": "digits", "noise": "symmetric:0.2"}]}, r"missing field\(s\) \['architecture'\]"),
    ({"tasks": [{**GOOD_TASK, "epochs": 3}]}, r"unknown field\(s\) \['epochs'\]"),
    ({"tasks": [GOOD_TASK, "digits"]}, r"tasks\[1\]: each task is an object"),
])
def test_bad_suite_files_name_the_field(tmp_path, spec, message):
    path = _suite(tmp_path, **spec)
    with pytest.raises(ValueError, match=message) as raised:
        tasks.load_suite(path)
    assert path in str(raised.value)


def test_a_suite_file_that_is_not_json_or_not_an_object(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text("{tasks: [")
    with pytest.raises(ValueError, match="is not valid JSON"):
        tasks.load_suite(str(path))
    path.write_text("[]")
    with pytest.raises(ValueError, match="expected {'name'"):
        tasks.load_suite(str(path))


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="Unknown task suite 'nope'"):
        tasks.load_suite("nope")
    with pytest.raises(ValueError, match="fitness_split must be one of"):
        tasks.load_suite("tiny", "test")


def test_an_unknown_data_set_is_found_before_the_search_starts(tmp_path):
    suite = tasks.load_suite(_suite(tmp_path, tasks=[{**GOOD_TASK, "dataset": "no_such_data"}]))
    with pytest.raises(ValueError, match="data set 'no_such_data' cannot be loaded: Unknown dataset"):
        tasks.check_datasets(suite)
    tasks.check_datasets(tasks.load_suite("bundled"))  # the bundled data sets need no lookup


def test_every_shipped_suite_is_valid():
    for name in tasks.SUITES:
        suite = tasks.load_suite(name)
        assert 1 <= suite.tasks_per_generation <= len(suite.tasks)


def test_task_keys_are_unique_in_every_shipped_suite():
    for suite in tasks.SUITES.values():
        assert len({task.key for task in suite.tasks}) == len(suite.tasks), suite.name
    assert tasks.Task("digits", "mlp", "none").key == "digits/mlp/none/200x64"  # old keys unchanged
    assert tasks.Task("digits", "mlp", "none", optimizer="momentum", learning_rate=0.01).key.endswith("/momentum@0.01")


@pytest.mark.parametrize("name", ["broad", "broad2"])
def test_the_broad_suite_covers_its_axes_and_leaves_the_heldout_families_out(name):
    suite = tasks.load_suite(name)
    tasks.check_datasets(suite)  # every procedural name parses and generates
    families = {tasks.dataset_family(task.dataset) for task in suite.tasks}
    assert families == {"digits", "procedural:templates"}
    assert not families & set(tasks.HELDOUT["dataset_families"])
    assert not {task.architecture for task in suite.tasks} & set(tasks.HELDOUT["architectures"])
    assert {task.optimizer for task in suite.tasks} == {"adam", "momentum"}
    specs = [tasks.noise_lib.parse_noise_spec(task.noise) for task in suite.tasks]
    assert {spec.kind for spec in specs} == {"symmetric", "pairflip", "instance"}
    assert min(spec.rate for spec in specs) == 0.2 and max(spec.rate for spec in specs) == 0.6
    assert {task.architecture for task in suite.tasks} == {"linear", "mlp", "cnn", "cnn_bn"}
    assert set(tasks.HELDOUT["architectures"]) <= set(tasks.models.ARCHITECTURES)
    assert tasks.dataset_family("procedural:strokes:classes=3") == "procedural:strokes"
    assert tasks.dataset_family("mnist5k") == "mnist5k"


@pytest.mark.parametrize("name", ["broad", "broad2"])
def test_the_broad_selection_suite_shares_no_data_set_or_noise_setting_with_the_search_suite(name):
    broad, selection = tasks.load_suite(name), tasks.load_suite(name + "_selection")
    tasks.check_datasets(selection)
    assert not {t.dataset for t in broad.tasks} & {t.dataset for t in selection.tasks}
    assert not {t.noise for t in broad.tasks} & {t.noise for t in selection.tasks}
    assert not {tasks.dataset_family(t.dataset) for t in selection.tasks} & set(tasks.HELDOUT["dataset_families"])
    assert not {t.architecture for t in selection.tasks} & set(tasks.HELDOUT["architectures"])
    assert {t.optimizer for t in selection.tasks} == {"adam", "momentum"}


def test_broad2_is_broad_with_sgd_at_a_learning_rate_of_0_1():
    import dataclasses

    for name in ("broad", "broad_selection"):
        old, new = tasks.load_suite(name).tasks, tasks.load_suite(name.replace("broad", "broad2")).tasks
        assert len(old) == len(new) and {t.learning_rate for t in old if t.optimizer == "momentum"} == {0.01}
        moved = [dataclasses.replace(t, learning_rate=0.1) if t.optimizer == "momentum" else t for t in old]
        assert moved == list(new), name


def test_instance_noise_and_momentum_train_end_to_end_in_both_evaluators():
    from tfrobust.losses import TaylorLoss
    from tfrobust.search import training

    task = tasks.Task("procedural:templates:classes=4,size=8,examples=400,difficulty=0.2", "mlp", "instance:0.4",
                      steps=30, batch_size=32, optimizer="momentum", learning_rate=0.05)
    instance = tasks.TaskInstance(task, seed=3)
    noisy = training._load(task.dataset, task.noise, instance.seed, False)
    assert 0.3 < noisy.noisy_labels.realised_rate < 0.5  # instance-dependent noise at its rate
    data = training.prepare_task(instance)
    np.testing.assert_array_equal(np.isin(data.y_stream, noisy.y_train), True)
    coefficients = np.stack([TaylorLoss.preset_info("cross_entropy_taylor3")["coefficients"],
                             TaylorLoss.preset_info("mae")["coefficients"]])
    population, finite = training.train_population(data, coefficients)
    single = [training.train_single(data, row)[0] for row in coefficients]
    assert finite.all() and population[0] > 0.4, population  # four classes: chance is 0.25
    np.testing.assert_allclose(population, single, atol=0.02)  # one model at a time or stacked: the same training


def test_the_heavy_selection_suite_adds_80_percent_symmetric_noise_and_nothing_else():
    import dataclasses

    base, heavy = tasks.load_suite("broad2_selection"), tasks.load_suite("broad2_selection_heavy")
    assert heavy.tasks[: len(base.tasks)] == base.tasks
    added = heavy.tasks[len(base.tasks):]
    assert len(added) == 4 and {t.noise for t in added} == {"symmetric:0.8"}
    assert list(added) == [dataclasses.replace(t, noise="symmetric:0.8") for t in base.tasks
                           if t.noise == "symmetric:0.5"]
    assert heavy.tasks_per_generation == 16  # the final selection scores every task
    assert not {tasks.dataset_family(t.dataset) for t in heavy.tasks} & set(tasks.HELDOUT["dataset_families"])
    assert not {t.architecture for t in heavy.tasks} & set(tasks.HELDOUT["architectures"])


def test_the_learnable_heavy_suites_put_80_percent_noise_on_learnable_sets_apart_from_validation_and_heldout():
    from tfrobust import benchmark

    search, selection = tasks.load_suite("broad2_learnable_heavy"), tasks.load_suite("broad2_selection_learnable_heavy")
    assert len(search.tasks) == 32 and sum(t.noise == "symmetric:0.8" for t in search.tasks) == 8  # a quarter
    base = tasks.load_suite("broad2_selection")
    assert selection.tasks[: len(base.tasks)] == base.tasks and selection.tasks_per_generation == 16
    added = selection.tasks[len(base.tasks):]
    assert {t.noise for t in added} == {"symmetric:0.8"} and {t.architecture for t in added} == {"mlp", "cnn_bn"}
    assert {(t.optimizer, t.learning_rate) for t in added} == {("adam", 1e-3), ("momentum", 0.1)}
    # The search, its selection and the validation benchmark use three different templates sets (digits is
    # the search's and the validation's by design); none touches the held-out families or architectures.
    validation = set(benchmark.BenchmarkConfig.from_preset("validation").datasets)
    searched, selected = {t.dataset for t in search.tasks}, {t.dataset for t in added}
    assert not searched & selected and (searched | selected) & validation == {"digits"}
    assert {tasks.dataset_family(d) for d in selected} == {"procedural:templates"}
    for suite in (search, selection):
        assert not {tasks.dataset_family(t.dataset) for t in suite.tasks} & set(tasks.HELDOUT["dataset_families"])
        assert not {t.architecture for t in suite.tasks} & set(tasks.HELDOUT["architectures"])


def test_the_uniform_draw_repeats_the_tasks_recorded_by_earlier_searches():
    # Generations 0 and 3 of the seed-5 learnable-heavy searches (revision a347eb4, evaluations.jsonl):
    # stratification must leave the uniform draw, and so the resumption of those runs, as it was.
    suite = tasks.SUITES["broad2_learnable_heavy"]
    assert suite.stratify_by == ""
    lh = "procedural:templates:classes=10,difficulty=0.2,seed=3"
    assert sorted(i.key for i in suite.draw(0, 5)) == [
        "digits/cnn_bn/symmetric:0.8/800x64#1469528430",
        f"{lh}/cnn_bn/instance:0.4/800x64/momentum@0.1#1784936175",
        f"{lh}/cnn_bn/pairflip:0.3/800x64/momentum@0.1#2027794795",
        f"{lh}/mlp/symmetric:0.8/800x64#1289419408",
    ]
    assert sorted(i.key for i in suite.draw(3, 5)) == [
        "digits/mlp/pairflip:0.3/800x64#269532888",
        f"{lh}/cnn_bn/symmetric:0.8/800x64/momentum@0.1#767869619",
        f"{lh}/mlp/symmetric:0.4/800x64#260681932",
        f"{lh}/mlp/symmetric:0.8/800x64#1131105432",
    ]


def _noise_counts(instances):
    counts = {}
    for instance in instances:
        counts[instance.task.noise] = counts.get(instance.task.noise, 0) + 1
    return counts


def test_a_draw_stratified_by_noise_scores_every_noise_setting_each_generation():
    uniform = tasks.SUITES["broad2_learnable_heavy"]
    suite = dataclasses.replace(uniform, stratify_by="noise")
    noises = {"symmetric:0.8", "symmetric:0.4", "pairflip:0.3", "instance:0.4"}
    assert set(suite.strata()) == noises and all(len(group) == 8 for group in suite.strata().values())
    # The uniform draw of this suite misses 80% noise in some generations (seed 5: generations 2, 4 and 7).
    assert any("symmetric:0.8" not in _noise_counts(uniform.draw(g, 5)) for g in range(10))
    drawn = set()
    for generation in range(200):
        instances = suite.draw(generation, 5)
        assert _noise_counts(instances) == dict.fromkeys(noises, 1)
        assert [i.key for i in instances] == [i.key for i in suite.draw(generation, 5)]  # seeded
        drawn.update(i.task for i in instances)
    assert drawn == set(suite.tasks)  # every task of every stratum is reachable
    six = dataclasses.replace(suite, tasks_per_generation=6)
    for generation in range(50):
        counts = _noise_counts(six.draw(generation, 1))
        assert sum(counts.values()) == 6 and sorted(counts.values()) == [1, 1, 2, 2]


def test_a_stratum_with_too_few_tasks_passes_its_share_on():
    small = [tasks.Task("digits", "mlp", "symmetric:0.8", steps=10)]
    large = [tasks.Task("digits", a, "symmetric:0.4", steps=s) for a in ("mlp", "linear") for s in (10, 20, 30)]
    suite = tasks.TaskSuite("uneven", tuple(small + large), tasks_per_generation=4, stratify_by="noise")
    for generation in range(30):
        instances = suite.draw(generation, 0)
        assert len({i.task for i in instances}) == 4  # no task twice
        assert _noise_counts(instances) == {"symmetric:0.8": 1, "symmetric:0.4": 3}
    everything = dataclasses.replace(suite, tasks_per_generation=len(suite.tasks))
    assert {i.task for i in everything.draw(0, 0)} == set(suite.tasks)


def test_stratify_by_is_checked_and_read_from_suite_files(tmp_path):
    with pytest.raises(ValueError, match="'stratify_by' must be one of"):
        tasks.TaskSuite("bad", (tasks.Task("digits", "mlp", "symmetric:0.4"),), 1, stratify_by="steps")
    path = _suite(tmp_path, tasks=[GOOD_TASK, {**GOOD_TASK, "noise": "pairflip:0.2"}], tasks_per_generation=2,
                  stratify_by="noise")
    suite = tasks.load_suite(path)
    assert suite.stratify_by == "noise" and suite.to_dict()["stratify_by"] == "noise"
    assert _noise_counts(suite.draw(0, 0)) == {"symmetric:0.4": 1, "pairflip:0.2": 1}


def test_the_heavy_probe_suite_is_80_percent_noise_on_mlp_at_two_budgets_outside_the_heldout_grid():
    suite = tasks.load_suite("broad2_heavy_probe")
    assert {(t.architecture, t.noise, t.optimizer) for t in suite.tasks} == {("mlp", "symmetric:0.8", "adam")}
    selection_heavy = tasks._LEARNABLE_HEAVY["selection"]
    assert {t.steps for t in suite.tasks if t.dataset in ("digits", selection_heavy)} == {800, 2400}
    assert not {tasks.dataset_family(t.dataset) for t in suite.tasks} & set(tasks.HELDOUT["dataset_families"])


def test_the_probed_selection_is_the_learnable_heavy_selection_plus_the_separating_probe_tasks():
    base, probed = tasks.load_suite("broad2_selection_learnable_heavy"), tasks.load_suite("broad2_selection_probed")
    assert probed.tasks[: len(base.tasks)] == base.tasks and probed.tasks_per_generation == len(probed.tasks)
    added = probed.tasks[len(base.tasks):]
    assert set(added) < set(tasks.load_suite("broad2_heavy_probe").tasks)
    assert sorted((t.dataset, t.steps) for t in added) == [
        ("digits", 800), ("digits", 2400), (tasks._LEARNABLE_HEAVY["selection"], 2400)]
    # The first repeat's instances are the base selection's: the re-selection re-scores the same instances.
    assert probed.fixed_instances(4, 2)[: len(base.tasks)] == base.fixed_instances(4, 2)[: len(base.tasks)]


def test_the_long_heavy_suite_scores_an_80_percent_mlp_task_at_2400_steps_every_generation():
    base, long = tasks.load_suite("broad2_learnable_heavy"), tasks.load_suite("broad2_learnable_heavy_long")
    assert long.stratify_by == "noise" and long.tasks_per_generation == 4
    heavy = [t for t in long.tasks if t.noise == "symmetric:0.8"]
    assert heavy == [dataclasses.replace(t, steps=2400) for t in base.tasks
                     if t.noise == "symmetric:0.8" and t.architecture == "mlp"]
    assert len(heavy) == 4 and {(t.dataset, t.optimizer) for t in heavy} == {
        (d, o) for d in ("digits", tasks._LEARNABLE_HEAVY["search"]) for o in ("adam", "momentum")}
    assert [t for t in long.tasks if t.noise != "symmetric:0.8"] == [t for t in base.tasks
                                                                    if t.noise != "symmetric:0.8"]
    for generation in range(40):
        drawn = long.draw(generation, 4)
        assert _noise_counts(drawn) == dict.fromkeys(long.strata(), 1)
        assert [i.task.steps for i in drawn if i.task.noise == "symmetric:0.8"] == [2400]
    assert not {tasks.dataset_family(t.dataset) for t in long.tasks} & set(tasks.HELDOUT["dataset_families"])
    assert not {t.architecture for t in long.tasks} & set(tasks.HELDOUT["architectures"])
