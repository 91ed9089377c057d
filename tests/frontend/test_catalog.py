"""What `--model` may name: files, shipped names, folders."""
from __future__ import annotations

import pytest

from harness.errors import FusebenchError
from harness.frontend.catalog import default_models, resolve_models
from harness.paths import MODELS_DIR


def test_names_paths_and_folders(tmp_path):
    shipped = default_models()
    assert resolve_models(None) == shipped
    assert resolve_models(shipped[0].stem) == [shipped[0]]
    (tmp_path / "big.tflite").write_bytes(b"x" * 20)
    (tmp_path / "small.tflite").write_bytes(b"x" * 10)
    (tmp_path / "notes.txt").write_text("not a model")
    assert [p.name for p in resolve_models(str(tmp_path))] == ["small.tflite", "big.tflite"]
    assert resolve_models(f"{shipped[0]},{tmp_path}")[0] == shipped[0]
    with pytest.raises(FusebenchError, match="model not found: nothing_here"):
        resolve_models("nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FusebenchError, match="no .tflite models in"):
        resolve_models(str(tmp_path / "empty"))


def test_the_architectures_folder_is_a_named_set():
    folder = MODELS_DIR / "architectures"
    models = resolve_models("architectures")
    assert models and all(p.parent == folder for p in models)
    assert all(p not in default_models() for p in models)      # not in the main job's default set
