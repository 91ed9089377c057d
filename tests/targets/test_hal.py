"""HAL descriptions (firmware/hal/<hal>/hal.toml): what a HAL takes from the
board file, checked when the board loads and turned into -D flags."""
import pytest

from harness.backend.build import hal_defines
from harness.errors import FusebenchError
from harness.targets import hal
from harness.targets.boards import load_board
from harness.targets.hal import hal_value, load_hal


def test_the_silicon_hals_describe_their_console_and_the_qemu_hals_need_nothing():
    for name in ("stm32h7", "stm32f4"):
        keys = [s.key for s in load_hal(name).settings]
        assert keys == ["clock_hz", "baud", "console_tx", "console_rx", "console_af"]
    for name in ("qemu-mps2", "qemu-netduinoplus2"):
        assert load_hal(name).settings == () and load_hal(name).path is None
    h7 = load_board("stm32h7")
    assert hal_defines(h7, h7.runner("qemu")) == []


def test_every_setting_reaches_the_compiler(tmp_path):
    text = load_board("nucleo-h743zi").path.read_text().replace('name = "nucleo-h743zi"', 'name = "mine"')
    text += 'console_tx = "PK15"\nbaud = 921600\n'
    (tmp_path / "mine.toml").write_text(text + "\n")
    board = load_board(tmp_path / "mine.toml")
    assert hal_defines(board, board.runner("serial")) == [
        "-DFB_CPU_HZ=480000000u", "-DFB_CONSOLE_BAUD=921600u", "-DFB_CONSOLE_TX_PORT=10",
        "-DFB_CONSOLE_TX_PIN=15", "-DFB_CONSOLE_RX_PORT=3", "-DFB_CONSOLE_RX_PIN=9", "-DFB_CONSOLE_AF=7"]
    assert hal_value(board, board.runner("serial"), "baud") == 921600


def test_a_setting_left_out_takes_the_descriptions_default():
    board = load_board("stm32h7")
    renode = board.runner("renode")
    assert hal_value(board, renode, "baud") == 115200
    assert hal_value(board, renode, "no_such_setting") is None


BOARD = """name = "mine"
core = "cortex-m4"
fpu = "fpv4-sp-d16"
clock_hz = 100
stack_bytes = 1024
[memory.flash]
origin = 0x08000000
size = 0x10000
[memory.ram]
origin = 0x20000000
size = 0x8000
[runners.{kind}]
hal = "{hal}"
uart_address = 0x40011000
instructions_per_tick = 1
machine = "netduinoplus2"
"""


def board_file(tmp_path, kind="serial", hal_name="stm32f4", extra=""):
    path = tmp_path / "mine.toml"
    path.write_text(BOARD.format(kind=kind, hal=hal_name) + extra)
    return path


def test_the_hal_decides_not_the_runner_kind(tmp_path):
    # A serial table on a HAL without a description needs no console keys ...
    assert load_board(board_file(tmp_path, "serial", "qemu-netduinoplus2")).runner("serial").hal == \
        "qemu-netduinoplus2"
    # ... and a qemu table on a silicon HAL needs them all.
    with pytest.raises(FusebenchError, match=r"mine.toml: missing key runners.qemu.console_tx"):
        load_board(board_file(tmp_path, "qemu", "stm32f4"))


@pytest.mark.parametrize("extra, message", [
    ('console_rx = "PA10"\nconsole_af = 7\n', r"missing key runners.serial.console_tx"),
    ('console_tx = 9\nconsole_rx = "PA10"\nconsole_af = 7\n', r"runners.serial.console_tx must be str, not int"),
    ('console_tx = "PZ9"\nconsole_rx = "PA10"\nconsole_af = 7\n', r"runners.serial.console_tx: bad pin name 'PZ9'"),
    ('console_tx = "PA9"\nconsole_rx = "PA10"\nconsole_af = true\n',
     r"runners.serial.console_af must be an integer from 0 to 15, not True"),
    ('console_tx = "PA9"\nconsole_rx = "PA10"\nconsole_af = 7\nbaud = "fast"\n',
     r"runners.serial.baud must be an integer from 1200 to 12000000, not 'fast'"),
])
def test_board_files_that_do_not_give_the_hal_what_it_needs(tmp_path, extra, message):
    with pytest.raises(FusebenchError, match=message) as info:
        load_board(board_file(tmp_path, extra=extra))
    assert "mine.toml" in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def hal_dir(tmp_path, monkeypatch):
    """A firmware/hal/ of the test's own."""
    root = tmp_path / "hal"
    root.mkdir()
    monkeypatch.setattr(hal, "HAL_DIR", root)
    return root


def describe(hal_dir, text, name="myhal"):
    (hal_dir / name).mkdir()
    (hal_dir / name / "hal.toml").write_text(text)


def test_a_hal_of_its_own_with_one_sided_bounds(tmp_path, hal_dir):
    describe(hal_dir, '[[setting]]\nkey = "led"\nkind = "pin"\ndefines = ["LED_PORT", "LED_PIN"]\n'
                      '[[setting]]\nkey = "stack_bytes"\nboard = true\nkind = "int"\nmin = 2048\n'
                      'defines = ["STACK"]\n')
    with pytest.raises(FusebenchError, match=r"mine.toml: stack_bytes must be an integer of at least 2048, "
                                             r"not 1024"):
        load_board(board_file(tmp_path, hal_name="myhal", extra='led = "PC13"\n'))
    path = board_file(tmp_path, hal_name="myhal", extra='led = "PC13"\n')
    path.write_text(path.read_text().replace("stack_bytes = 1024", "stack_bytes = 4096"))
    board = load_board(path)
    assert load_hal("myhal").defines(board, board.runner("serial")) == ["-DLED_PORT=2", "-DLED_PIN=13",
                                                                        "-DSTACK=4096"]


@pytest.mark.parametrize("text, message", [
    ('[[setting]]\nkey = "x"\nkind = "float"\ndefines = ["X"]\n', r"setting 'x': kind must be one of int, pin"),
    ('[[setting]]\nkey = "x"\nkind = "pin"\ndefines = ["X"]\n', r"setting 'x': defines must be a list of 2"),
    ('[[setting]]\nkey = "x"\nkind = "int"\ndefines = ["not a macro"]\n', r"setting 'x': defines must be"),
    ('[[setting]]\nkind = "int"\ndefines = ["X"]\n', r"setting 1 has no key"),
    ('[[setting]]\nkey = "x"\nkind = "int"\ndefines = ["X"]\nunit = "Hz"\n', r"setting 'x': unknown field\(s\) unit"),
    ('[[setting]]\nkey = "x"\nboard = true\nkind = "int"\ndefines = ["X"]\n',
     r"setting 'x': board = true only for a figure of the board"),
    ('[[setting]]\nkey = "x"\nkind = "pin"\nmin = 1\ndefines = ["X", "Y"]\n', r"setting 'x': min must be an integer"),
    ('[[setting]]\nkey = "x"\nkind = "int"\nmax = 9\ndefault = 10\ndefines = ["X"]\n',
     r"default of x must be an integer of at most 9, not 10"),
    ('setting = 3\n', r"settings must be \[\[setting\]\] tables"),
    ('[console]\n', r"unknown key\(s\) console"),
    ('[[setting]\n', r"invalid TOML"),
])
def test_bad_hal_descriptions_give_one_line_errors(tmp_path, hal_dir, text, message):
    describe(hal_dir, text)
    with pytest.raises(FusebenchError, match=message) as info:
        load_board(board_file(tmp_path, hal_name="myhal"))
    assert str(info.value).startswith(f"HAL description {hal_dir / 'myhal' / 'hal.toml'}: ")
    assert "\n" not in str(info.value)

