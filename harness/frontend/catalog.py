"""The shipped models and what `--model` may name."""
from __future__ import annotations

from pathlib import Path

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
