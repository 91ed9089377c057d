"""The invoke command line (tasks.py)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from invoke import Collection


def test_every_option_has_a_real_flag():
    """invoke derives short flags from option names, dashes included: none may
    be `-` (it showed as `--=STRING, --patch-end`), and no two may clash."""
    spec = importlib.util.spec_from_file_location("fusebench_tasks", Path(__file__).parents[1] / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    collection = Collection.from_module(module)
    for name in collection.task_names:
        flags = [n for arg in collection[name].get_arguments() for n in arg.names]
        assert "-" not in flags, name
        assert len(flags) == len(set(flags)), name
