"""The protocol's numbers come from one place, firmware/app/fb_protocol.h: the
firmware includes it, harness.targets.protocol parses it."""
import shutil
import subprocess

import pytest

from tests.helpers import TESTS_DIR
from harness.targets import protocol
from harness.targets.protocol import PROTOCOL_HEADER, ProtocolHeaderError, read_header_constants

ROOT = TESTS_DIR.parent
PYTHON_NAMES = {"PROTOCOL_VERSION": "FB_PROTOCOL_VERSION", "MAX_CHUNK_BYTES": "FB_MAX_CHUNK_BYTES",
                "MAX_PATH_BYTES": "FB_MAX_PATH_BYTES", "INPUT_READ_FAILED": "FB_INPUT_READ_FAILED",
                "NEED_RETRIES": "FB_NEED_RETRIES"}

CC = shutil.which("gcc") or shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no host C compiler")


def c_values(tmp_path, names) -> dict[str, int]:
    """The constants as the C compiler sees them."""
    source = tmp_path / "print_constants.c"
    source.write_text('#include <stdio.h>\n#include "fb_protocol.h"\nint main(void)\n{\n'
                      + "".join(f'    printf("{n} %lld\\n", (long long)({n}));\n' for n in names)
                      + "    return 0;\n}\n")
    exe = tmp_path / "print_constants"
    subprocess.run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", f"-I{PROTOCOL_HEADER.parent}",
                    str(source), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {name: int(value) for name, value in (line.split() for line in out.splitlines())}


@needs_cc
def test_the_python_constants_are_the_headers_as_c_sees_them(tmp_path):
    in_c = c_values(tmp_path, sorted(read_header_constants()))
    assert in_c == read_header_constants()
    for python_name, c_name in PYTHON_NAMES.items():
        assert getattr(protocol, python_name) == in_c[c_name], python_name
    assert in_c["FB_PROTOCOL_VERSION"] == 1 and in_c["FB_MAX_CHUNK_BYTES"] == 256
    assert in_c["FB_INPUT_READ_FAILED"] == -100


def test_the_generated_header_takes_the_failed_read_status_from_the_protocol_header():
    from harness.backend import codegen
    assert codegen.INPUT_READ_FAILED == read_header_constants()["FB_INPUT_READ_FAILED"]


GOOD = """/* a comment
 * #define in a comment is not read */
#ifndef FB_PROTOCOL_H
#define FB_PROTOCOL_H
#define FB_A 1u
#define FB_B 640 /* with a comment */
#define FB_C (-100)
#endif
"""


def test_the_parser_reads_the_three_forms(tmp_path):
    header = tmp_path / "fb_protocol.h"
    header.write_text(GOOD)
    assert read_header_constants(header) == {"FB_A": 1, "FB_B": 640, "FB_C": -100}


@pytest.mark.parametrize("line", [
    "#define FB_X 0x100",               # hex: not what the parser reads
    "#define FB_X -100",                # a negative number without parentheses
    "#define FB_X (1 + 2)",             # an expression
    "#define FB_X 256 // comment",      # a C++ comment
    "#define FB_X 25 6",
    "#define FB_X \\",                  # continued on the next line
    "#define FB_X",                     # no value (only the include guard may)
    "#define OTHER 1",                  # outside the FB_ namespace
    "#include <stdint.h>",
    "#if FB_SOMETHING",
    "#undef FB_A",
])
def test_the_parser_refuses_what_it_does_not_understand(tmp_path, line):
    header = tmp_path / "fb_protocol.h"
    header.write_text(GOOD.replace("#endif", line + "\n#endif"))
    with pytest.raises(ProtocolHeaderError, match=r"fb_protocol.h:\d+: not '#define FB_<NAME> <integer>'"):
        read_header_constants(header)


def test_the_parser_refuses_a_name_defined_twice_and_a_missing_header(tmp_path):
    header = tmp_path / "fb_protocol.h"
    header.write_text(GOOD.replace("#endif", "#define FB_A 2u\n#endif"))
    with pytest.raises(ProtocolHeaderError, match="FB_A defined twice"):
        read_header_constants(header)
    with pytest.raises(ProtocolHeaderError, match="cannot read the protocol header"):
        read_header_constants(tmp_path / "missing.h")


def test_a_constant_missing_from_the_header_is_named():
    with pytest.raises(ProtocolHeaderError, match="no '#define FB_MAX_CHUNK_BYTES <integer>'"):
        protocol._firmware_constant({"FB_PROTOCOL_VERSION": 1}, "FB_MAX_CHUNK_BYTES")


@needs_cc
def test_the_firmware_refuses_a_model_header_with_another_failed_read_status(tmp_path):
    """stream.c checks the generated FB_MODEL_ERR_INPUT against fb_protocol.h."""
    def compile_stream(status: str):
        (tmp_path / "fb_model.h").write_text(
            "#include <stdint.h>\n#define FB_INPUT_BYTES 16\n#define FB_OUTPUT_BYTES 4\n"
            "#define FB_ARENA_BYTES 64\n#define FB_NUM_LAYERS 1\n#define FB_INPUT_STREAMED 1\n"
            f"#define FB_MODEL_ERR_INPUT ({status})\n")
        return subprocess.run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-c", f"-I{tmp_path}",
                               f"-I{ROOT / 'firmware/app'}", f"-I{ROOT / 'firmware/hal'}",
                               str(ROOT / "firmware/app/stream.c"), "-o", str(tmp_path / "stream.o")],
                              capture_output=True, text=True)
    assert compile_stream(str(protocol.INPUT_READ_FAILED)).returncode == 0
    failed = compile_stream("-99")
    assert failed.returncode != 0 and "disagree on the status of a failed input read" in failed.stderr
