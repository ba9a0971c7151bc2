"""Grouped cross-validation: groups from labels.csv, folds that never split a group, the errors, the CLI."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from emotion.train import cv, data
from emotion.train.data import DataError, load_dataset, stratified_split
from emotion.train.evaluate_cli import main as evaluate_main


def test_group_from_theme_strips_the_trailing_number():
    assert data.group_from_theme("Dog 12") == "Dog"
    assert data.group_from_theme("Garbage dump 3") == "Garbage dump"
    assert data.group_from_theme(" Sky ") == "Sky"
    assert data.group_from_theme("42") == "42"


@pytest.fixture(scope="module")
def grouped_data(synth_data, tmp_path_factory):
    """The synthetic images with a labels.csv: themes "<class> subject X k" -> 16 groups; 4 files unlisted."""
    root = tmp_path_factory.mktemp("grouped") / "data"
    shutil.copytree(synth_data, root)
    dataset = load_dataset(root)
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "theme", "category", "valence_mean", "label"])
        for i, sample in enumerate(dataset.samples[:-4]):
            name = dataset.labels[sample.label]
            writer.writerow([sample.relative_to(root), f"{name} subject {chr(65 + i % 8)} {i}", "Object", "4.5", name])
    return root


def test_read_groups_from_labels_csv(grouped_data):
    dataset = load_dataset(grouped_data)
    groups, source = data.read_groups(dataset)
    assert len(groups) == len(dataset.samples) == 80
    assert "theme" in source and "76 of 80" in source
    listed = [g for g in groups if not g.startswith("file:")]
    assert len(listed) == 76 and len(set(listed)) == 16
    assert all(" subject" in g and not g[-1].isdigit() for g in listed)
    assert sum(g.startswith("file:") for g in groups) == 4  # unlisted files are their own group


def test_training_split_keeps_groups_whole(grouped_data, synth_data):
    """emotion-train's validation split, like the folds, never puts pictures of one group on both sides."""
    dataset = load_dataset(grouped_data)
    split = stratified_split(dataset, 0.2, seed=21)
    groups = dict(zip((s.path for s in dataset.samples), data.read_groups(dataset)[0]))
    assert split.grouped and len(split.train) + len(split.validation) == 80
    assert not {groups[s.path] for s in split.train} & {groups[s.path] for s in split.validation}
    assert {s.label for s in split.validation} == {s.label for s in split.train} == {0, 1}
    assert stratified_split(load_dataset(grouped_data), 0.2, seed=21) == split  # deterministic
    assert not stratified_split(load_dataset(synth_data)).grouped  # no labels.csv: each class split at random


def test_without_labels_csv_each_file_is_a_group(synth_data):
    groups, source = data.read_groups(load_dataset(synth_data))
    assert len(set(groups)) == len(groups) == 80 and "own group" in source


@pytest.mark.parametrize("k", [2, 5])
def test_grouped_folds_never_split_a_group(grouped_data, k):
    dataset = load_dataset(grouped_data)
    groups, _ = data.read_groups(dataset)
    y = dataset.y
    folds = cv.grouped_folds(y, groups, k, seed=21)
    assert len(folds) == k
    tested = np.concatenate([te for _, te in folds])
    assert sorted(tested) == list(range(len(y)))  # every image tested exactly once
    for train, test in folds:
        assert not set(train) & set(test)
        assert not set(groups[train]) & set(groups[test])  # no group on both sides
        assert set(y[test]) == {0, 1}
        inner_train, inner_val = data.grouped_split(y[train], groups[train], seed=21)
        itr, ival = train[inner_train], train[inner_val]
        assert sorted(np.concatenate([itr, ival])) == sorted(train)  # drawn from the training folds only
        assert not set(groups[itr]) & set(groups[ival]) and not set(ival) & set(test)
        assert set(y[ival]) == {0, 1}
    again = cv.grouped_folds(y, groups, k, seed=21)  # a fixed seed: the same folds every time
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_too_many_folds_are_refused():
    y = np.array([0] * 3 + [1] * 20)
    groups = np.array([f"g{i}" for i in range(23)], dtype=object)
    with pytest.raises(DataError, match=r"larger than the smallest class \(Negative: 3 images\)"):
        cv.check_k(4, y, groups)
    few = np.array(["a", "b", "c"] * 7 + ["a", "b"], dtype=object)
    with pytest.raises(DataError, match="larger than the number of groups \\(3"):
        cv.check_k(4, np.array([0] * 10 + [1] * 13), few)
    with pytest.raises(DataError, match="at least 2"):
        cv.check_k(1, y, groups)
    cv.check_k(3, y, groups)


def _run(argv, capsys):
    try:
        code = evaluate_main(argv)
    except SystemExit as exit_info:  # argparse's own usage errors
        code = exit_info.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--cv", "81", "{data}"], "larger than the smallest class ("),
        (["--cv", "21", "{data}"], "larger than the number of groups (20"),
        (["--cv", "3", "{data}", "--archs", "edge", "resnet9000"], "known: seed"),
        (["--cv", "3", "{data}", "{data}"], "--cv takes one folder"),
        (["--cv", "3"], "--cv needs the data folder"),
        (["--cv", "3", "{data}", "--threshold", "0.4"], "--threshold does not apply"),
        (["--cv", "3", "{missing}"], "does not exist"),
        (["--archs", "edge", "{data}", "{data}"], "go with --cv"),
        (["{data}"], "give MODEL and DATA"),
    ],
)
def test_cv_cli_errors_are_one_line_exit_2(argv, message, grouped_data, tmp_path, capsys):
    argv = [a.format(data=grouped_data, missing=tmp_path / "missing") for a in argv]
    code, out, err = _run(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert "error:" in lines[-1] and message in lines[-1]
    assert len(lines) == 1 or lines[0].startswith("usage:")  # argparse's own errors add the usage line


def test_cv_cli_runs_on_the_same_folds_and_writes_json(grouped_data, tmp_path, capsys):
    """A tiny end-to-end run: 2 folds, edge for 1 epoch, and the colour baseline."""
    out = tmp_path / "cv.json"
    code = evaluate_main(["--cv", "2", str(grouped_data), "--archs", "edge", "--epochs", "1", "--json",
                          "--out", str(out), "--quiet"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed["k"] == saved["k"] == 2 and printed["groups"] == 20
    assert set(saved["models"]) == {"colour-logreg", "edge"}
    for result in saved["models"].values():
        assert len(result["folds"]) == 2
        for name in ("roc_auc", "accuracy", "balanced_accuracy"):
            assert 0.0 <= result[name]["mean"] <= 1.0 and result[name]["std"] >= 0.0
    assert saved["models"]["edge"]["folds"][0]["epochs_run"] == 1
    predictions = saved["predictions"]
    assert len(predictions) == 80 and "predictions" not in printed
    by_group = {}
    for p in predictions:
        by_group.setdefault(p["group"], set()).add(p["fold"])
        assert 0.0 <= p["edge"] <= 1.0 and 0.0 <= p["colour-logreg"] <= 1.0
    assert all(len(folds) == 1 for folds in by_group.values())
