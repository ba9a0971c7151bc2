"""The runtime stands alone: importing it and predicting never imports TensorFlow, Keras, tf2onnx or NNCF."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
from PIL import Image

BLOCKED = ("tensorflow", "keras", "tf2onnx", "nncf", "tf_keras", "torch")

SCRIPT = textwrap.dedent(
    """
    import sys

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} must not be imported by emotion.runtime")
            return None

    sys.meta_path.insert(0, Blocker())

    import numpy as np

    import emotion.runtime.cli, emotion.runtime.kserve, emotion.runtime.serve
    from emotion.runtime import EmotionClassifier

    model, images = sys.argv[2], sys.argv[3]
    with EmotionClassifier.load(model, cache_dir=None) as clf:
        assert clf.predict(np.zeros(clf.input_shape, np.uint8)).ok
        assert all(p.ok for p in clf.predict_many([images + "/a.jpg"] * 3))
        assert clf.submit(np.zeros(clf.input_shape, np.uint8)).result(timeout=30).probability > 0
    with EmotionClassifier.load(model + "/emotion.onnx") as clf:  # ONNX Runtime, from the suffix
        assert clf.predict(images + "/a.jpg").ok
    code = emotion.runtime.cli.main([images, "--model", model, "--no-cache", "--quiet"])
    assert code == 0, code
    leaked = sorted({m.split(".")[0] for m in sys.modules} & BLOCKED)
    assert not leaked, leaked
    print("isolated")
    """
)


def test_runtime_never_imports_training_or_export_stacks(tiny_export, tmp_path):
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(tmp_path / "a.jpg")
    onnx_export = tiny_export  # the export folder holds the IR variants and the ONNX file
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(BLOCKED), str(onnx_export), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "isolated"
