"""The C structs of fb_runtime.h, read from the header itself.

The header is the one place a struct's layout is written: this module parses
its `typedef struct { ... } name;` declarations (a strict parser of the small
subset the header uses: int32_t fields, comma lists of them, nested struct
types declared earlier, and pointers to int8_t/int16_t/int32_t/double/void, with
or without const) into

    STRUCTS[name]        a StructDecl: the C fields in order, each a CField
    ctypes_struct(name)  the ctypes.Structure mirror (harness.backend.hostrt)

Anything else inside a struct is an error naming the line, so a header change
the parser does not understand fails loudly instead of giving a wrong layout.
tests/backend/test_cstructs.py compiles a C program that prints sizeof and
offsetof of every field and compares them with the ctypes mirrors.
"""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from harness.errors import FusebenchError
from harness.paths import FIRMWARE_DIR

HEADER = FIRMWARE_DIR / "runtime" / "include" / "fb_runtime.h"

# C scalar types a field or pointer target may have, with their ctypes.
_SCALARS = {"int8_t": ctypes.c_int8, "int16_t": ctypes.c_int16, "int32_t": ctypes.c_int32,
            "double": ctypes.c_double, "void": None}


@dataclass(frozen=True)
class CField:
    name: str
    ctype: str                  # "int32_t", a struct name, or the pointer's target type
    pointer: bool = False       # a pointer to ctype
    const: bool = False         # the pointer's target is const

    @property
    def is_struct(self) -> bool:
        return not self.pointer and self.ctype not in _SCALARS

    @property
    def c_decl(self) -> str:
        """The field's C type as written in a cast, e.g. `const int32_t *`."""
        return f"{'const ' if self.const else ''}{self.ctype}{' *' if self.pointer else ''}"


@dataclass(frozen=True)
class StructDecl:
    name: str
    fields: tuple[CField, ...]

    def field(self, name: str) -> CField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    @property
    def has_pointers(self) -> bool:
        """Holds a pointer, itself or in a nested struct."""
        return any(f.pointer or (f.is_struct and STRUCTS[f.ctype].has_pointers) for f in self.fields)

    def flat_fields(self) -> tuple[str, ...]:
        """The int32 field names, nested structs' fields in place (a KernelCall's
        params keys for this struct)."""
        names: list[str] = []
        for f in self.fields:
            if f.is_struct:
                names.extend(STRUCTS[f.ctype].flat_fields())
            elif f.pointer:
                raise FusebenchError(f"{self.name}.{f.name} is a pointer, not a parameter")
            else:
                names.append(f.name)
        return tuple(names)


_TYPEDEF = re.compile(r"typedef\s+struct\s*\{(?P<body>[^{}]*)\}\s*(?P<name>\w+)\s*;", re.S)
_DECL = re.compile(r"^(?P<const>const\s+)?(?P<type>\w+)\s+(?P<names>[\w\s,*]+)$")
_NAME = re.compile(r"^(?P<star>\*?)\s*(?P<name>[A-Za-z_]\w*)$")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse_structs(text: str, source: str = "header") -> dict[str, StructDecl]:
    """Every `typedef struct { ... } name;` in `text`, in order of appearance."""
    text = _strip_comments(text)
    structs: dict[str, StructDecl] = {}
    for m in _TYPEDEF.finditer(text):
        name = m.group("name")
        line = text.count("\n", 0, m.start()) + 1
        fields: list[CField] = []
        for decl in m.group("body").split(";"):
            decl = " ".join(decl.split())
            if not decl:
                continue
            d = _DECL.match(decl)
            if d is None:
                raise FusebenchError(f"{source}:{line}: struct {name}: cannot parse field declaration {decl!r}")
            ctype, const = d.group("type"), bool(d.group("const"))
            if ctype not in _SCALARS and ctype not in structs:
                raise FusebenchError(f"{source}:{line}: struct {name}: unknown type {ctype!r}")
            for part in d.group("names").split(","):
                n = _NAME.match(part.strip())
                if n is None:
                    raise FusebenchError(f"{source}:{line}: struct {name}: cannot parse declarator {part.strip()!r}")
                pointer = bool(n.group("star"))
                if not pointer and (const or ctype in ("void", "double", "int8_t", "int16_t")):
                    # the header's structs hold int32 values, nested structs and pointers only
                    raise FusebenchError(f"{source}:{line}: struct {name}: field {n.group('name')} of type "
                                         f"{'const ' if const else ''}{ctype} is not supported")
                if pointer and ctype not in _SCALARS:
                    raise FusebenchError(f"{source}:{line}: struct {name}: pointer to struct "
                                         f"{ctype} is not supported")
                fields.append(CField(n.group("name"), ctype, pointer, const))
        if not fields:
            raise FusebenchError(f"{source}:{line}: struct {name} has no fields")
        structs[name] = StructDecl(name, tuple(fields))
    return structs


STRUCTS: dict[str, StructDecl] = parse_structs(HEADER.read_text(), HEADER.name)


def struct(name: str) -> StructDecl:
    decl = STRUCTS.get(name)
    if decl is None:
        raise FusebenchError(f"fb_runtime.h declares no struct {name}")
    return decl


def _ctype_of(f: CField):
    if f.pointer:
        target = _SCALARS[f.ctype]
        return ctypes.c_void_p if target is None else ctypes.POINTER(target)
    if f.is_struct:
        return ctypes_struct(f.ctype)
    return _SCALARS[f.ctype]


@lru_cache(maxsize=None)
def ctypes_struct(name: str) -> type[ctypes.Structure]:
    """The ctypes.Structure mirror of struct `name` (one class per struct)."""
    decl = struct(name)
    return type(name, (ctypes.Structure,), {"_fields_": [(f.name, _ctype_of(f)) for f in decl.fields],
                                             "__doc__": f"ctypes mirror of {name} (fb_runtime.h)"})


def fill(name: str, values: dict, keep: Optional[list] = None, to_pointer=None) -> ctypes.Structure:
    """A ctypes struct `name` from a value tree: per field an int, a nested
    dict (a struct), a tuple (a struct, positionally), None (a null pointer or
    an absent field: zero) or, for pointer fields, whatever `to_pointer(field,
    value)` turns into a ctypes pointer."""
    decl = struct(name)
    obj = ctypes_struct(name)()
    items = values.items() if isinstance(values, dict) else zip((f.name for f in decl.fields), values)
    for key, value in items:
        f = decl.field(key)
        if value is None:
            continue
        if f.is_struct:
            setattr(obj, key, fill(f.ctype, value, keep, to_pointer))
        elif f.pointer:
            if isinstance(value, int):
                if value != 0:
                    raise FusebenchError(f"{name}.{key}: integer {value} for a pointer")
                continue
            setattr(obj, key, to_pointer(f, value))
        else:
            setattr(obj, key, int(value))
    return obj
