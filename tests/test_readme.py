"""The README's module table names every module of the harness, and only
modules that exist."""
from __future__ import annotations

import re

from tests.helpers import TESTS_DIR

ROOT = TESTS_DIR.parent


def _module_table() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("| module | what it does |")
    return readme[start:readme.index("\n\n", start)]


def _named_paths(table: str) -> set[str]:
    """Paths the table names: `harness/x.py`, `frontend/x.py`, and the
    `fused.py, msf.py` shorthand after a folder's first entry."""
    named = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        folder = None
        for item in re.findall(r"`([\w/.]+)`", cell):
            if "/" in item:
                folder, _, name = item.rpartition("/")
                path = item if item.startswith(("harness/", "firmware/", "tools/")) else f"harness/{item}"
                folder = path.rpartition("/")[0]
            else:
                path = f"{folder}/{item}" if folder else item
            named.add(path.rstrip("/"))
    return named


def test_every_harness_module_is_in_the_readme_table():
    named = _named_paths(_module_table())
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "harness").rglob("*.py")
               if not p.name.startswith("__")}
    listed_folders = {n for n in named if not n.endswith(".py")}
    missing = {m for m in modules if m not in named and not any(m.startswith(f + "/") for f in listed_folders
                                                                if f.count("/") >= 2)}
    assert not missing, f"modules missing from the README's module table: {sorted(missing)}"
    for path in named:
        assert (ROOT / path).exists(), f"the README's module table names {path}, which does not exist"


def test_the_readme_lists_exactly_the_supported_ops():
    from harness.frontend.tflite_import import supported_ops
    readme = " ".join((ROOT / "README.md").read_text().split())
    start = readme.index("Models given with `--model` may be any int8 `.tflite` with the supported ops (")
    listed = readme[start:readme.index(")", start)].split("(", 1)[1].split(";")[0]
    named = {w.strip(" ,.") for w in listed.replace(" and ", ", ").split(",") if w.strip(" ,.")}
    assert named == supported_ops(), (sorted(named), sorted(supported_ops()))
