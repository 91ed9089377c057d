"""harness.backend.cstructs: the ctypes mirrors read from fb_runtime.h have the
layout the C compiler gives the structs, field by field."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest

from harness.backend import cstructs, hostrt
from harness.errors import FusebenchError


def c_layout(tmp_path) -> dict[str, int]:
    """sizeof of every struct and offsetof/sizeof of every field, as the host
    compiler lays out fb_runtime.h (a program generated from the parsed names:
    a field the parser misread or missed changes a size or an offset)."""
    compiler = os.environ.get("CC", "gcc")
    if shutil.which(compiler) is None:
        pytest.skip(f"no host C compiler {compiler}")
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "fb_runtime.h"', "int main(void) {"]
    for name, decl in cstructs.STRUCTS.items():
        lines.append(f'    printf("{name} %zu\\n", sizeof({name}));')
        for f in decl.fields:
            lines.append(f'    printf("{name}.{f.name} %zu %zu\\n", offsetof({name}, {f.name}), '
                         f'sizeof((({name} *)0)->{f.name}));')
    lines += ["    return 0;", "}"]
    source, exe = tmp_path / "layout.c", tmp_path / "layout"
    source.write_text("\n".join(lines) + "\n")
    subprocess.run([compiler, "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(hostrt.RUNTIME_DIR / "include"),
                    "-o", str(exe), str(source)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    layout = {}
    for line in out.splitlines():
        key, *numbers = line.split()
        layout[key] = tuple(int(n) for n in numbers)
    return layout


def test_every_struct_and_field_has_the_compilers_layout(tmp_path):
    layout = c_layout(tmp_path)
    assert "fb_bottleneck_params" in cstructs.STRUCTS and "fb_view" in cstructs.STRUCTS
    for name, decl in cstructs.STRUCTS.items():
        cls = cstructs.ctypes_struct(name)
        assert layout[name] == (ctypes.sizeof(cls),), name
        for f in decl.fields:
            field = getattr(cls, f.name)
            assert layout[f"{name}.{f.name}"] == (field.offset, field.size), f"{name}.{f.name}"


def test_the_header_declares_every_struct_the_kernel_table_names():
    from harness.backend.kernels import KERNELS, Params
    for spec in KERNELS.values():
        for arg in spec.of_role(Params):
            assert arg.struct in cstructs.STRUCTS, (spec.name, arg.struct)


def test_parser_reads_comma_lists_nested_structs_and_pointers():
    structs = cstructs.parse_structs("""
        typedef struct { int32_t a, b; /* c */ int32_t c; } inner;
        typedef struct {
            inner in;             // nested
            const int8_t *data;   /* a pointer */
            void *any;
            int32_t n;
        } outer;""")
    assert [f.name for f in structs["inner"].fields] == ["a", "b", "c"]
    outer = structs["outer"].fields
    assert [(f.name, f.ctype, f.pointer, f.const) for f in outer] == [
        ("in", "inner", False, False), ("data", "int8_t", True, True), ("any", "void", True, False),
        ("n", "int32_t", False, False)]
    assert outer[1].c_decl == "const int8_t *"


@pytest.mark.parametrize("body", [
    "int32_t a[4];",                 # arrays
    "float x;",                      # an unknown type
    "int8_t small;",                 # non-int32 scalars
    "struct other *next;",           # struct pointers
    "unknown_t y;",
])
def test_parser_refuses_what_it_does_not_understand(body):
    with pytest.raises(FusebenchError, match="struct s"):
        cstructs.parse_structs(f"typedef struct {{ int32_t ok; {body} }} s;", "test.h")
