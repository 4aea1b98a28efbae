"""How well the label-issue finder finds injected label noise, against cleanlab, and what it buys.

For each noise setting on a bundled data set (`tfrobust.datasets.load`, the
clean labels kept), `run` compares

* tfrobust: `tfrobust.label_issues.find_label_issues` with its default loss,
  `TaylorLoss.pretrained()` (out-of-fold probabilities), and the flagging
  rule `filter_by` (default: its own default, "low_self_confidence");
* cleanlab + CE: cleanlab's `find_label_issues(filter_by="prune_by_noise_rate")`
  fed out-of-fold probabilities of the same model, folds and training trained
  with cross-entropy, what a cleanlab user would do;
* tfrobust CL + CE: the same rule `filter_by` on those CE probabilities
  (separates the loss's contribution from the rule's);

by precision, recall and F1 of the flagged set against the truly corrupted
examples, and AUROC of the label-quality scores (self-confidence). Then the
payoff: CE retrained on the training split without the flagged examples,
beside CE and TaylorLoss on all the noisy labels and CE on the clean labels,
each scored by accuracy on the clean test split.

cleanlab is imported only here, inside `run` (pip install cleanlab, or the
`[test]` extra); the library itself never needs it.
"""

import csv
import glob
import io
import os
import time

import keras
import numpy as np
from sklearn import metrics as sk_metrics

from tfrobust import _io, datasets, label_issues, models
from tfrobust.optimizers import make_optimizer

DEFAULT_NOISES = ("symmetric:0.2", "symmetric:0.4", "pairflip:0.2", "pairflip:0.4", "instance:0.2", "instance:0.4")
DETECTORS = ("tfrobust (TaylorLoss)", "cleanlab + CE", "tfrobust CL + CE")
PIPELINES = ("CE, noisy labels", "TaylorLoss, noisy labels", "CE, tfrobust-flagged removed",
             "CE, cleanlab-flagged removed", "CE, clean labels")
FLAG_FIELDS = ("noise", "index", "given_label", "true_label", "is_corrupted", "tfrobust_flag", "tfrobust_quality",
               "tfrobust_predicted", "cleanlab_flag", "cleanlab_quality", "fold")


def detection_metrics(is_corrupted, flagged, quality):
    """Precision, recall, F1 of `flagged` and AUROC of `-quality` against the corrupted examples."""
    is_corrupted, flagged = np.asarray(is_corrupted, bool), np.asarray(flagged, bool)
    precision, recall, f1 = _precision_recall_f1(is_corrupted, flagged)
    both_kinds = 0 < is_corrupted.sum() < len(is_corrupted)
    auroc = sk_metrics.roc_auc_score(is_corrupted, -np.asarray(quality)) if both_kinds else float("nan")
    return {"flagged": int(flagged.sum()), "corrupted": int(is_corrupted.sum()), "precision": precision,
            "recall": recall, "f1": f1, "auroc": float(auroc)}


def _precision_recall_f1(is_corrupted, flagged):
    hits = int(np.sum(is_corrupted & flagged))
    precision = hits / max(int(flagged.sum()), 1)
    recall = hits / max(int(is_corrupted.sum()), 1)
    return precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def run(output_dir, *, dataset="digits", noises=DEFAULT_NOISES, architecture="mlp", num_folds=3, epochs=15,
        batch_size=64, learning_rate=1e-3, seed=0, max_examples=None, grid_count=24,
        filter_by="low_self_confidence", printer=print):
    """Runs the comparison for every noise in `noises`; writes and returns the results.

    Writes to `output_dir` (atomically): `flags.csv` (one row per training
    example and noise: given / true label, both finders' flags and scores),
    `metrics.md` (the detection and accuracy tables),
    `top_flagged_<noise>.png` (the tfrobust finder's most likely mislabelled
    images, given -> predicted label, green where really mislabelled), and
    `probabilities_<noise>.npz` (both out-of-fold probability matrices with the
    given and true labels: other flagging rules can be scored without training).

    Returns:
        `(detection_rows, accuracy_rows)`: lists of dicts, one per noise and
        detector / pipeline.
    """
    from cleanlab.filter import find_label_issues as cleanlab_find_label_issues
    from cleanlab.rank import get_label_quality_scores as cleanlab_quality

    detection_rows, accuracy_rows, flag_rows = [], [], []
    started = time.perf_counter()
    for done, noise in enumerate(noises):
        data = datasets.load(dataset, noise=noise, validation_fraction=0.0, seed=seed, max_examples=max_examples)
        x, y, corrupted = data.x_train, data.y_train, data.is_corrupted

        def model_fn():
            return models.build_model(architecture, data.input_shape, data.num_classes)

        common = dict(num_folds=num_folds, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                      seed=seed, printer=lambda line: printer(f"  [{noise}] {line}"))
        printer(f"{noise}: out-of-fold probabilities with TaylorLoss.pretrained()")
        ours = label_issues.find_label_issues(model_fn, x, y, filter_by=filter_by, **common)
        printer(f"{noise}: out-of-fold probabilities with cross-entropy")
        ce_probs, _ = label_issues.out_of_fold_probabilities(
            model_fn, x, y, loss=keras.losses.SparseCategoricalCrossentropy(), **common)
        cleanlab_flags = np.asarray(cleanlab_find_label_issues(y, ce_probs, filter_by="prune_by_noise_rate"), bool)
        cleanlab_scores = cleanlab_quality(y, ce_probs, method="self_confidence")
        ours_on_ce = label_issues.issues_from_probabilities(y, ce_probs, filter_by=filter_by)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, taylor=ours.pred_probs, cross_entropy=ce_probs, given_labels=y,
                            true_labels=data.y_train_clean)
        _io.write_bytes(f"{output_dir}/probabilities_{_slug(noise)}.npz", buffer.getvalue())
        for detector, flags, quality in zip(
                DETECTORS, (ours.is_label_issue, cleanlab_flags, ours_on_ce.is_label_issue),
                (ours.label_quality, cleanlab_scores, ours_on_ce.label_quality)):
            detection_rows.append({"noise": noise, "realised_rate": float(corrupted.mean()), "detector": detector,
                                   **detection_metrics(corrupted, flags, quality)})

        printer(f"{noise}: training the five pipelines on the full training split")
        keep_ours, keep_cleanlab = ~ours.is_label_issue, ~cleanlab_flags
        trainings = (("CE", x, y), ("taylor", x, y), ("CE", x[keep_ours], y[keep_ours]),
                     ("CE", x[keep_cleanlab], y[keep_cleanlab]), ("CE", x, data.y_train_clean))
        for pipeline, (loss, x_fit, y_fit) in zip(PIPELINES, trainings):
            accuracy = _test_accuracy(model_fn, loss, x_fit, y_fit, data, epochs, batch_size, learning_rate, seed)
            accuracy_rows.append({"noise": noise, "pipeline": pipeline, "training_examples": len(y_fit),
                                  "test_accuracy": accuracy})

        for index in range(len(y)):
            flag_rows.append((noise, index, int(y[index]), int(data.y_train_clean[index]), int(corrupted[index]),
                              int(ours.is_label_issue[index]), f"{ours.label_quality[index]:.6f}",
                              int(ours.predicted_labels[index]), int(cleanlab_flags[index]),
                              f"{cleanlab_scores[index]:.6f}", int(ours.folds[index])))
        if x.ndim in (3, 4):
            label_issues.plot_label_issues(x, ours, f"{output_dir}/top_flagged_{_slug(noise)}.png",
                                           count=grid_count, true_labels=data.y_train_clean)
        elapsed = time.perf_counter() - started
        eta = elapsed / (done + 1) * (len(noises) - done - 1)
        printer(f"noise {done + 1}/{len(noises)} ({noise}) done | {elapsed:.0f}s elapsed, ETA {eta:.0f}s")
        _write_outputs(output_dir, detection_rows, accuracy_rows, flag_rows)
    return detection_rows, accuracy_rows


def run_seeds(output_dir, seeds, printer=print, **settings):
    """`run` once per seed (each in `output_dir/seed_<seed>`), then `summary.md` in `output_dir`: every
    metric as mean ± std over the seeds (`summary_markdown`). Returns `{seed: (detection_rows, accuracy_rows)}`."""
    seeds = list(dict.fromkeys(seeds))
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of non-negative integers; got {seeds!r}.")
    results = {}
    for done, seed in enumerate(seeds):
        printer(f"seed {seed} ({done + 1}/{len(seeds)})")
        results[seed] = run(f"{output_dir}/seed_{seed}", seed=seed, printer=printer, **settings)
        _io.write_text(f"{output_dir}/summary.md", summary_markdown(results))
    return results


def rescore_filters(folders, filters=None, printer=print):
    """F1 of every flagging rule on the out-of-fold probabilities saved by earlier runs, without training.

    `folders`: run folders (each with `probabilities_<noise>.npz`, as `run`
    writes them), typically one per seed. Each rule in `filters` (default:
    all of `label_issues.FILTERS`) flags both the TaylorLoss and the CE
    probabilities; cleanlab's default on the CE probabilities is the
    reference row. Returns `(rows, markdown)`: rows `{noise, probabilities,
    filter_by, f1: [one per folder]}`, the table F1 as mean ± std.
    """
    filters = tuple(label_issues.FILTERS if filters is None else filters)
    rows = {}
    for folder in folders:
        paths = sorted(glob.glob(os.path.join(folder, "probabilities_*.npz")))
        if not paths:
            raise FileNotFoundError(f"No probabilities_<noise>.npz in {folder!r}: rescore the folders that "
                                    "search.label_issues wrote (one per seed with --seeds).")
        for path in paths:
            noise = os.path.basename(path)[len("probabilities_"):-len(".npz")]
            with np.load(path) as saved:
                given, corrupted = saved["given_labels"], saved["given_labels"] != saved["true_labels"]
                for probabilities in ("taylor", "cross_entropy"):
                    for filter_by in filters:
                        flags = label_issues.issues_from_probabilities(
                            given, saved[probabilities], filter_by=filter_by).is_label_issue
                        f1 = _precision_recall_f1(corrupted, flags)[2]
                        rows.setdefault((noise, probabilities, filter_by), []).append(f1)
        printer(f"rescored {folder}")
    counts = {len(values) for values in rows.values()}
    if len(counts) != 1:
        raise ValueError(f"The folders do not hold the same noise settings ({sorted(counts)} values per cell).")
    found = list(dict.fromkeys(key[0] for key in rows))
    noises = [slug for slug in map(_slug, DEFAULT_NOISES) if slug in found] + sorted(set(found) - set(
        map(_slug, DEFAULT_NOISES)))
    lines = [f"F1 of each flagging rule on saved out-of-fold probabilities, mean ± std over {counts.pop()} "
             "folder(s); cleanlab's default is cross_entropy / prune_by_noise_rate.", "",
             "| probabilities / filter_by | " + " | ".join(noises) + " |", "|---|" + "---|" * len(noises)]
    for probabilities in ("taylor", "cross_entropy"):
        for filter_by in filters:
            cells = [_mean_std(rows[(noise, probabilities, filter_by)]) for noise in noises]
            lines.append(f"| {probabilities} / {filter_by} | " + " | ".join(cells) + " |")
    table = [{"noise": noise, "probabilities": probabilities, "filter_by": filter_by, "f1": values}
             for (noise, probabilities, filter_by), values in rows.items()]
    return table, "\n".join(lines) + "\n"


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")


def summary_markdown(results):
    """Detection (F1, AUROC, precision, recall) and payoff (clean test accuracy) tables over seeds:
    `results` is `{seed: (detection_rows, accuracy_rows)}` as `run` returns them."""
    detection = [row for rows, _ in results.values() for row in rows]
    accuracy = [row for _, rows in results.values() for row in rows]
    noises = list(dict.fromkeys(row["noise"] for row in detection))
    lines = [f"Mean ± std over {len(results)} seed(s) ({', '.join(map(str, results))}).", "",
             "| noise | detector | F1 | AUROC | precision | recall |", "|---|---|---|---|---|---|"]
    for noise in noises:
        for detector in DETECTORS:
            rows = [row for row in detection if row["noise"] == noise and row["detector"] == detector]
            lines.append(f"| {noise} | {detector} | " + " | ".join(
                _mean_std([row[key] for row in rows]) for key in ("f1", "auroc", "precision", "recall")) + " |")
    lines += ["", "Clean test accuracy:", "", "| pipeline | " + " | ".join(noises) + " |", "|---|" + "---|" * len(noises)]
    for pipeline in PIPELINES:
        cells = [_mean_std([row["test_accuracy"] for row in accuracy
                            if row["noise"] == noise and row["pipeline"] == pipeline]) for noise in noises]
        lines.append(f"| {pipeline} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _test_accuracy(model_fn, loss, x, y, data, epochs, batch_size, learning_rate, seed):
    keras.utils.set_random_seed(seed)
    model = model_fn()
    if loss == "taylor":
        from tfrobust.losses import TaylorLoss

        loss = TaylorLoss.pretrained()
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=make_optimizer("adam", learning_rate), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    predicted = model.predict(data.x_test, batch_size=1024, verbose=0).argmax(axis=1)
    return float(np.mean(predicted == data.y_test))


def _slug(noise):
    return noise.replace(":", "_").replace(".", "")


def tables_markdown(detection_rows, accuracy_rows):
    """The detection table and the payoff table, as markdown."""
    lines = ["| noise | realised | detector | flagged | precision | recall | F1 | AUROC |",
             "|---|---|---|---|---|---|---|---|"]
    for row in detection_rows:
        lines.append(f"| {row['noise']} | {row['realised_rate']:.3f} | {row['detector']} | {row['flagged']} | "
                     f"{row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['auroc']:.3f} |")
    noises = list(dict.fromkeys(row["noise"] for row in accuracy_rows))
    lines += ["", "Clean test accuracy:", "", "| pipeline | " + " | ".join(noises) + " |",
              "|---|" + "---|" * len(noises)]
    for pipeline in PIPELINES:
        cells = [f"{row['test_accuracy']:.3f}" for noise in noises for row in accuracy_rows
                 if row["noise"] == noise and row["pipeline"] == pipeline]
        lines.append(f"| {pipeline} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write_outputs(output_dir, detection_rows, accuracy_rows, flag_rows):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FLAG_FIELDS)
    writer.writerows(flag_rows)
    _io.write_text(f"{output_dir}/flags.csv", buffer.getvalue())
    _io.write_text(f"{output_dir}/metrics.md", tables_markdown(detection_rows, accuracy_rows))
