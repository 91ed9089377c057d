"""Shared fixtures: the shipped models and their imported graphs."""
from __future__ import annotations

import shutil

import pytest

from harness.paths import MODELS_DIR


def shipped_models():
    return sorted(MODELS_DIR.glob("*.tflite"))


@pytest.fixture(scope="session")
def model_paths():
    paths = shipped_models()
    assert paths, "no shipped models in models/"
    return paths


def pytest_collection_modifyitems(config, items):
    """QEMU tests need the emulator and the cross compiler: say so when absent."""
    missing = [tool for tool in ("qemu-system-arm", "arm-none-eabi-gcc") if shutil.which(tool) is None]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"{', '.join(missing)} not installed (run scripts/setup.sh)")
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)
