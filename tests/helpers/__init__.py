"""Test support: single-op int8 models (tflite_builder), kernel cases, host
checks against LiteRT, and where the test fixtures live."""
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
FIXTURES = TESTS_DIR / "fixtures" / "firmware"
