"""Data folder scanning, the deterministic stratified split and its manifest, the synthetic dataset."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from emotion.train.data import (
    DataError,
    load_dataset,
    manifest_text,
    read_manifest,
    stratified_split,
    write_manifest,
)
from emotion.train.synth import SynthConfig, generate


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_synth_is_deterministic_and_in_the_seed_layout(tmp_path):
    cfg = SynthConfig(n=20, seed=3, height=32, width=40)
    a, b = generate(tmp_path / "a", cfg), generate(tmp_path / "b", cfg)
    assert a == b and sum(a.values()) == 20 and min(a.values()) > 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert {p.name for p in (tmp_path / "a").iterdir()} == {"Negative", "Positive"}
    assert _digest(tmp_path / "a") != _digest(generate(tmp_path / "c", SynthConfig(n=20, seed=4, height=32, width=40)) and tmp_path / "c")
    with pytest.raises(FileExistsError):
        generate(tmp_path / "a", cfg)


def test_split_is_stratified_deterministic_and_order_independent(synth_data, tmp_path):
    dataset = load_dataset(synth_data)
    first = stratified_split(dataset, 0.2, seed=21)
    dataset.samples.reverse()  # scan order must not matter
    second = stratified_split(dataset, 0.2, seed=21)
    assert manifest_text(first) == manifest_text(second)
    other = stratified_split(dataset, 0.2, seed=22)
    assert manifest_text(other) != manifest_text(first)
    counts = dataset.counts()
    for index, name in enumerate(dataset.labels):
        n_val = sum(s.label == index for s in first.validation)
        assert n_val == round(counts[name] * 0.2)
    assert not {s.path for s in first.train} & {s.path for s in first.validation}
    assert len(first.train) + len(first.validation) == len(dataset.samples)


def test_manifest_round_trip_and_files_untouched(synth_data, tmp_path):
    before = _digest(synth_data)
    split = stratified_split(load_dataset(synth_data))
    path = write_manifest(split, tmp_path)
    back = read_manifest(path, synth_data)
    assert [s.path for s in back.train] == [s.path for s in split.train]
    assert [s.label for s in back.validation] == [s.label for s in split.validation]
    assert path.read_text().splitlines()[0] == "path,label,class_index,subset"
    assert _digest(synth_data) == before  # nothing moved, renamed or deleted


def test_report_counts_imbalance_and_majority(synth_data):
    report = load_dataset(synth_data).report()
    counts = report["counts"]
    assert report["total"] == sum(counts.values()) == 80
    assert report["majority_accuracy"] == pytest.approx(max(counts.values()) / 80, abs=1e-4)
    assert report["imbalance_ratio"] == pytest.approx(max(counts.values()) / min(counts.values()), abs=1e-3)


def test_non_images_are_listed_and_left_out(synth_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    (data / "Positive" / "notes.jpg").write_text("not a picture")
    (data / "Negative" / "empty.jpg").write_bytes(b"")
    (data / "Negative" / "README.txt").write_text("ignored: not claiming to be an image")
    dataset = load_dataset(data)
    reasons = {p.name: r for p, r in dataset.rejected}
    assert set(reasons) == {"notes.jpg", "empty.jpg"}
    assert "not an image" in reasons["notes.jpg"] and "empty" in reasons["empty.jpg"]
    assert len(dataset.samples) == 80


def test_bad_folders_give_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "d" / "Positive").mkdir(parents=True)
    with pytest.raises(DataError, match="no Negative/"):
        load_dataset(tmp_path / "d")
    (tmp_path / "d" / "Negative").mkdir()
    generate(tmp_path / "s", SynthConfig(n=10, height=16, width=16))
    for p in (tmp_path / "s" / "Positive").iterdir():
        shutil.copy(p, tmp_path / "d" / "Positive")
    with pytest.raises(DataError, match="Negative/ holds no readable images"):
        load_dataset(tmp_path / "d")
    shutil.copy(next((tmp_path / "s" / "Negative").iterdir()), tmp_path / "d" / "Negative")
    with pytest.raises(DataError, match="too few"):
        stratified_split(load_dataset(tmp_path / "d"))
