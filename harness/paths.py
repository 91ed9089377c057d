"""Where the repository keeps things: the one place that knows the repo root."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"
BOARDS_DIR = ROOT / "boards"
BUILD_DIR = ROOT / "build"
RESULTS_DIR = ROOT / "results"
FIRMWARE_DIR = ROOT / "firmware"
