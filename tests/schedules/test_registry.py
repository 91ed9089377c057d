"""The schedule registry: one module per variant, everything else derived."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest
from invoke import Collection

import harness.schedules as schedules_package
from harness.errors import FusebenchError
from harness.frontend.tflite_import import load_model
from harness.schedules import registry
from harness.schedules.registry import byte_size, cli_options, make_plan, parse_cli_options, percent, yes_no
from tests.helpers import TESTS_DIR

ROOT = TESTS_DIR.parent


def test_every_variant_is_one_module_with_its_declaration():
    names = registry.schedule_names()
    assert names[:6] == ["unfused", "ordered", "fused", "msf", "patch", "reordered"]
    for s in registry.all_schedules():
        module = sys.modules[s.plan.__module__]
        assert module.__name__ == f"harness.schedules.{s.name}" and module.SCHEDULE is s
        assert s.runs and s.ram


def test_a_new_schedule_is_one_file(tmp_path, monkeypatch, model_paths):
    """A module dropped into the package is a variant: make_plan, the options
    and the command line see it, with nothing else edited."""
    (tmp_path / "toy.py").write_text(textwrap.dedent('''
        from harness.schedules.registry import Option, Schedule, whole_number
        from harness.schedules.unfused import plan_layer_by_layer

        def plan_toy(graph, board=None, toy_rows=None):
            plan = plan_layer_by_layer(graph, variant="toy")
            plan.arena_bytes += toy_rows or 0
            return plan

        SCHEDULE = Schedule(name="toy", runs="layer by layer, padded", ram="the unfused arena plus rows",
                            plan=plan_toy, options=(Option("toy_rows", whole_number, "bytes to add"),))
    '''))
    monkeypatch.setattr(schedules_package, "__path__", [*schedules_package.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_SCHEDULES", None)
    try:
        assert "toy" in registry.schedule_names()
        graph = load_model(model_paths[0])
        base = make_plan(graph, "unfused").arena_bytes
        options = parse_cli_options({"toy_rows": "16", "patches": None})
        assert make_plan(graph, "toy", **options).arena_bytes == base + 16
        assert make_plan(graph, "unfused", **options).arena_bytes == base      # not its option
        assert "toy: bytes to add" in {o.name: o for o in cli_options()}["toy_rows"].help
    finally:
        sys.modules.pop("harness.schedules.toy", None)
        registry._SCHEDULES = None


def test_shared_option_names_are_documented_per_schedule():
    options = {o.name: o for o in cli_options()}
    overhead = options["max_overhead"]
    assert [s.name for s in overhead.readers] == ["fused", "msf", "reordered"]
    for name in ("fused: ", "msf: ", "reordered: "):
        assert name in overhead.help
    assert options["stream_input"].switch and options["stream_input"].default is True


def test_option_parsers_give_values_or_one_line_errors():
    assert percent("15", "max-overhead") == pytest.approx(0.15) == percent("15%", "max-overhead")
    assert byte_size("64K", "ram-budget") == byte_size("64KiB", "ram-budget") == 65536
    assert yes_no("no", "first-conv") is False and yes_no("yes", "first-conv") is True
    for parse, bad, option in ((percent, "lots", "max-overhead"), (percent, "-3", "max-overhead"),
                               (byte_size, "0", "ram-budget"), (yes_no, "maybe", "first-conv")):
        with pytest.raises(FusebenchError, match=option):
            parse(bad, option)
    with pytest.raises(FusebenchError, match="unknown schedule option"):
        parse_cli_options({"tiles": "3"})
    assert parse_cli_options({"ram_budget": "1K", "blocks": None, "stream_input": True}) == {"ram_budget": 1024}
    assert parse_cli_options({"ram_budget": "1K", "blocks": None, "stream_input": False}) == \
        {"ram_budget": 1024, "stream_input": False}


def test_first_conv_is_reachable(model_paths):
    graph = load_model(model_paths[0])
    with_conv = make_plan(graph, "fused", **parse_cli_options({"first_conv": "yes", "blocks": "0-1"}))
    without = make_plan(graph, "fused", **parse_cli_options({"first_conv": "no", "blocks": "0-1"}))
    assert with_conv.stages[0].ops[0] == 0 and without.stages[0].ops[0] > 0


def test_every_task_that_plans_takes_every_schedule_option():
    spec = importlib.util.spec_from_file_location("fusebench_tasks", ROOT / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tasks = Collection.from_module(module)
    flags = {o.flag for o in cli_options()}
    for name in ("plan", "bench", "build", "resolution"):
        names = {"--" + n for arg in tasks[name].get_arguments() for n in arg.names if len(n) > 1}
        assert flags <= names | {"--no-stream-input", "--stream-input"}, name


def test_the_readme_table_is_the_registry_s():
    readme = (ROOT / "README.md").read_text()
    assert registry.readme_table() in readme, \
        "the README's schedule table is stale: paste `python -m harness.schedules`"
    printed = subprocess.run([sys.executable, "-m", "harness.schedules"], capture_output=True,
                             text=True, cwd=ROOT, check=True).stdout
    assert printed.strip() == registry.readme_table()


def test_a_board_without_the_dsp_kernels_is_planned_for_the_portable_ones():
    from harness.schedules import make_plan
    """The scratch a plan gives each call is what the board's own kernel build
    asks for: a RISC-V board (portable kernels) gets no bytes that only the DSP
    kernels use, so its painted arena can equal the plan; without a board the
    plan fits either build."""
    from harness.backend.hostrt import buffer_size
    from harness.backend.lowering import lower_op
    from harness.frontend.tflite_import import load_model
    from harness.paths import MODELS_DIR
    from harness.targets.boards import load_board
    graph = load_model(MODELS_DIR / "mobilenetv2_w035_64.tflite")
    first_conv = lower_op(graph, graph.ops[0])
    portable, dsp = buffer_size(first_conv, "portable"), buffer_size(first_conv, "dsp")
    assert portable < dsp
    for board, expected in (("esp32c3", portable), ("stm32h7", dsp), (None, dsp)):
        plan = make_plan(graph, "unfused", board=load_board(board) if board else None)
        assert plan.scratch_of(0).size >= expected and plan.scratch_of(0).size - expected < 16, board
