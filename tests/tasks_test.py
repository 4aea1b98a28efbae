"""Task suites: every field of a suite file is checked before a search starts, each error naming the field."""

import json

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
