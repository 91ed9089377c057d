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
    """`--model` values: a path, a comma-separated list of paths, or a shipped
    model's name (with or without `.tflite`); None means the shipped defaults."""
    if not spec:
        return default_models()
    paths = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        p = Path(item)
        candidates = [p, MODELS_DIR / item, MODELS_DIR / f"{item}.tflite"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FusebenchError(f"model not found: {item}")
        paths.append(found)
    return paths
