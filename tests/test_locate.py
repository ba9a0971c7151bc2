"""Model location: the documented forms (file, version, repository, export folder with a variant, ./exports/)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from emotion.runtime import EmotionClassifier, ModelLoadError, default_model, resolve_model


def test_files_versions_repositories_and_exports(tiny_export):
    fp32 = tiny_export / "emotion" / "1" / "model.xml"
    assert resolve_model(fp32) == fp32
    assert resolve_model(fp32.with_suffix(".bin")) == fp32
    assert resolve_model(fp32.parent) == fp32  # version folder
    assert resolve_model(fp32.parent.parent) == fp32  # repository folder
    assert resolve_model(tiny_export) == fp32  # export folder: fp32 by default
    assert resolve_model(tiny_export, variant="int8") == tiny_export / "emotion-int8" / "1" / "model.xml"
    assert resolve_model(tiny_export, variant="fp16") == tiny_export / "emotion-fp16" / "1" / "model.xml"
    assert resolve_model(tiny_export, backend="onnxruntime") == tiny_export / "emotion.onnx"
    for variant, precision in (("fp16", "fp16"), ("int8", "int8"), (None, "fp32")):
        with EmotionClassifier.load(tiny_export, variant=variant, cache_dir=None) as clf:
            assert clf.info.precision == precision


def test_wrong_requests_say_what_is_there(tiny_export, tmp_path):
    fp32 = tiny_export / "emotion" / "1" / "model.xml"
    with pytest.raises(ModelLoadError, match="no int8 ONNX model in the export"):
        resolve_model(tiny_export, backend="onnxruntime", variant="int8")
    with pytest.raises(ModelLoadError, match="not a model file: expected .onnx"):
        resolve_model(fp32, backend="onnxruntime")
    with pytest.raises(ModelLoadError, match="variant fp16 chooses among an export folder's models"):
        resolve_model(fp32, variant="fp16")
    with pytest.raises(ValueError, match="unknown variant"):
        resolve_model(tiny_export, variant="fp8")
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model(tmp_path / "nope.xml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="holds no model"):
        resolve_model(tmp_path / "empty")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    with pytest.raises(ModelLoadError, match="broken symbolic link"):
        resolve_model(tmp_path / "link")
    two = tmp_path / "two"
    shutil.copytree(tiny_export / "emotion", two / "emotion")
    shutil.copytree(tiny_export / "emotion", two / "mood")
    with pytest.raises(ModelLoadError, match="several models"):
        resolve_model(two)


def test_highest_version_wins_and_an_int8_only_export_is_found(tiny_export, tmp_path):
    fp32 = tiny_export / "emotion" / "1" / "model.xml"
    repo = tmp_path / "repo" / "mood"
    for version in ("1", "3", "20"):
        shutil.copytree(fp32.parent, repo / version)
    (repo / "notes").mkdir()
    (repo / ".30.x.partial").mkdir()  # a version being written: ignored
    assert resolve_model(repo) == repo / "20" / "model.xml"
    int8_only = tmp_path / "int8-only"
    shutil.copytree(tiny_export / "emotion-int8", int8_only / "emotion-int8")
    assert resolve_model(int8_only) == int8_only / "emotion-int8" / "1" / "model.xml"  # no fp32 exported
    with pytest.raises(ModelLoadError, match="no fp32 model in the export; variants here: int8"):
        resolve_model(int8_only, variant="fp32")


def test_default_model_is_the_environment_or_the_newest_export(tiny_export, tmp_path):
    exports = tmp_path / "exports"
    old, new = exports / "old", exports / "new"
    shutil.copytree(tiny_export, old)
    shutil.copytree(tiny_export, new)
    os.utime(old / "export_report.json", (1_000_000_000, 1_000_000_000))
    (exports / ".new2.x.partial").mkdir()  # an export being written: ignored
    assert default_model({}, cwd=tmp_path) == new
    assert default_model({"EMOTION_MODEL": "/somewhere/model.xml"}, cwd=tmp_path) == Path("/somewhere/model.xml")
    with pytest.raises(ModelLoadError, match="emotion-export RUN --out exports/NAME"):
        default_model({}, cwd=tmp_path / "nothing-here")
