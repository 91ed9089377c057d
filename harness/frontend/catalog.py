"""The shipped models and what `--model` may name."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from harness.errors import FusebenchError
from harness.paths import MODELS_DIR


def default_models() -> list[Path]:
    """The shipped default models, smallest file first (so quick runs come first)."""
    models = sorted(MODELS_DIR.glob("*.tflite"), key=lambda p: (p.stat().st_size, p.name))
    if not models:
        raise FusebenchError(f"no .tflite models in {MODELS_DIR}; run `invoke models` to make them")
    return models


def resolve_models(spec: str | None) -> list[Path]:
    """`--model` values: a path, a comma-separated list of paths, a shipped
    model's name (with or without `.tflite`), or a folder (a path, or a folder
    of models/ such as `architectures`): its .tflite files, smallest first;
    None means the shipped defaults."""
    if not spec:
        return default_models()
    paths = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        p = Path(item)
        candidates = [p, MODELS_DIR / item, MODELS_DIR / f"{item}.tflite"]
        found = next((c for c in candidates if c.is_file()), None)
        folder = next((c for c in candidates[:2] if c.is_dir()), None)
        if found is not None:
            paths.append(found)
        elif folder is not None:
            inside = sorted(folder.glob("*.tflite"), key=lambda q: (q.stat().st_size, q.name))
            if not inside:
                raise FusebenchError(f"no .tflite models in {folder}")
            paths.extend(inside)
        else:
            raise FusebenchError(f"model not found: {item}")
    return paths


def model_record(path: str | Path) -> Optional[dict]:
    """The record `invoke models` wrote for this file in the models.json beside
    it (its training, accuracy and, for a detector, its head and shipped
    inputs), or None for a model that came from elsewhere."""
    path = Path(path)
    manifest = path.parent / "models.json"
    if not manifest.is_file():
        return None
    try:
        records = json.loads(manifest.read_text())
    except (OSError, ValueError) as e:
        raise FusebenchError(f"cannot read {manifest}: {e}") from None
    record = records.get(path.name) if isinstance(records, dict) else None
    return record if isinstance(record, dict) else None
