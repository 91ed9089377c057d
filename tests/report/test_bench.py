"""The sweep: run folder, rows, summary; end to end on QEMU with the smallest model."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from harness.report.bench import BENCH_COLUMNS, RowWriter, new_run_dir, run_sweep
from harness.paths import MODELS_DIR
from harness.errors import FusebenchError
from harness.report.tables import summarize_bench

SMALLEST = MODELS_DIR / "mobilenetv2_w035_64.tflite"


def test_run_dir_and_latest_link(tmp_path):
    first = new_run_dir(tmp_path)
    second = new_run_dir(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    assert os.readlink(tmp_path / "latest") == second.name


def test_rows_are_on_disk_as_soon_as_written(tmp_path):
    writer = RowWriter(tmp_path / "bench.csv")
    writer.write(dict(board="b", model="m", variant="unfused", input="i0", status="ok"))
    # readable before close: an interrupted sweep keeps what it measured
    rows = pd.read_csv(tmp_path / "bench.csv")
    assert list(rows.columns) == BENCH_COLUMNS and rows["status"].tolist() == ["ok"]
    writer.close()


def test_summary_counts_statuses_and_takes_peaks():
    rows = pd.DataFrame([
        dict(board="b", runner="qemu", model="m", variant="unfused", input=f"i{i}", status=s,
             instructions=100 + i, count_source="qemu-icount", macs=10, arena_bytes_planned=64,
             arena_bytes_peak=64, stack_bytes_peak=10 + i, ram_bytes_total=80 + i,
             ram_bytes_needed=None, ram_bytes_available=128, flash_bytes=1000, top1=1, label=l)
        for i, (s, l) in enumerate([("ok", 1), ("ok", 2), ("mismatch", 1)])])
    s = summarize_bench(rows).iloc[0]
    assert (s["ok"], s["mismatch"], s["crash"]) == (2, 1, 0)
    assert s["instructions_median"] == 100  # median of the ok rows 100, 101 -> int
    assert s["stack_bytes_peak"] == 11 and s["top1_accuracy"] == 0.5
    assert not s["all_outputs_match"]


def test_fps_is_estimated_from_instructions_and_measured_only_from_cycles():
    def rows(count_source, column):
        return pd.DataFrame([dict(board="b", runner="r", model="m", variant="unfused", input="i", status="ok",
                                  **{column: 48_000_000}, count_source=count_source, macs=1,
                                  arena_bytes_planned=1, arena_bytes_peak=1, stack_bytes_peak=1, ram_bytes_total=2,
                                  ram_bytes_needed=None, ram_bytes_available=8, flash_bytes=1,
                                  clock_hz=480_000_000, top1=1, label=None)])
    emulated = summarize_bench(rows("qemu-icount", "instructions")).iloc[0]
    assert emulated["fps_estimated_from_instructions"] == 10.0 and pd.isna(emulated["fps_measured_from_cycles"])
    silicon = summarize_bench(rows("dwt", "cycles")).iloc[0]
    assert silicon["fps_measured_from_cycles"] == 10.0 and pd.isna(silicon["fps_estimated_from_instructions"])


def test_a_variant_that_ran_no_row_has_no_match_answer():
    rows = pd.DataFrame([
        dict(board="b", runner="qemu", model="m", variant=v, input="i0", status=status, instructions=None,
             count_source="", macs=10, arena_bytes_planned=64, arena_bytes_peak=None, stack_bytes_peak=None,
             ram_bytes_total=None, ram_bytes_needed=900 if status == "does-not-fit" else None,
             ram_bytes_available=128, flash_bytes=None, top1=None, label=1)
        for v, status in (("unfused", "does-not-fit"), ("ordered", "not-applicable"))])
    summary = summarize_bench(rows)
    assert summary["all_outputs_match"].isna().all()


def test_bench_csv_lines_end_in_a_newline_only(tmp_path):
    writer = RowWriter(tmp_path / "bench.csv")
    writer.write(dict(board="b", model="m", variant="unfused", input="i0", status="ok"))
    writer.close()
    assert b"\r" not in (tmp_path / "bench.csv").read_bytes()


def test_unknown_board_or_variant_fails_before_any_work(tmp_path):
    with pytest.raises(FusebenchError, match="unknown board|no board"):
        run_sweep(["nosuchboard"], [SMALLEST], ["unfused"], run_dir=tmp_path)
    with pytest.raises(FusebenchError, match="unknown variant"):
        run_sweep(["stm32h7"], [SMALLEST], ["warp-speed"], run_dir=tmp_path)


@pytest.mark.qemu
def test_bench_end_to_end_on_both_boards(tmp_path):
    run_dir = run_sweep(["stm32h7", "stm32f4"], [SMALLEST], ["unfused", "fused", "msf"], max_inputs=2,
                        jobs=2, run_dir=tmp_path)
    rows = pd.read_csv(run_dir / "bench.csv")
    assert len(rows) == 2 * 3 * 2
    assert (rows["status"] == "ok").all(), rows[["board", "variant", "status", "detail"]]
    assert rows["outputs_match"].all()
    assert (rows["count_source"] == "qemu-icount").all() and (rows["instructions"] > 1_000_000).all()
    # the measured arena watermark equals the plan, for both schedules
    assert (rows["arena_bytes_peak"] == rows["arena_bytes_planned"]).all()
    fused = rows[rows["variant"] == "fused"]["arena_bytes_peak"].max()
    unfused = rows[rows["variant"] == "unfused"]["arena_bytes_peak"].max()
    assert fused < 0.5 * unfused
    msf = rows[rows["variant"] == "msf"]["arena_bytes_peak"].max()
    assert msf <= fused
    assert ((rows["ram_bytes_total"] - rows["arena_bytes_peak"] - rows["stack_bytes_peak"])
            == rows["static_data_bytes"]).all()
    layers = pd.read_csv(run_dir / "layers.csv")
    assert set(layers["variant"]) == {"unfused", "fused", "msf"} and (layers["instructions"] >= 0).all()


@pytest.mark.qemu
def test_msf_under_a_ram_budget_and_an_overhead_limit_runs_bit_exact(tmp_path):
    """The two questions of the search, built and run: options pass through."""
    for options in ({"ram_budget": 24 * 1024}, {"max_overhead": 0.3}):
        run_dir = run_sweep(["stm32f4"], [SMALLEST], ["msf"], max_inputs=2, jobs=1, options=options,
                            run_dir=tmp_path / str(len(options)) / next(iter(options)))
        rows = pd.read_csv(run_dir / "bench.csv")
        assert (rows["status"] == "ok").all() and rows["outputs_match"].all(), rows[["status", "detail"]]
        assert (rows["arena_bytes_peak"] == rows["arena_bytes_planned"]).all()
        if "ram_budget" in options:
            assert (rows["arena_bytes_peak"] <= 24 * 1024).all()


def test_external_weight_flash_in_the_linker_script():
    from harness.targets.boards import load_board
    from harness.backend.build import linker_script
    board = load_board("stm32h7-qspi")
    script = linker_script(board, board.runner("qemu"))
    assert "WEIGHTS (r)  : ORIGIN = 0x60000000, LENGTH = 0x800000" in script
    # the weights statement must precede .text, whose *(.rodata.*) would take the blob
    assert script.index(".fb_weights") < script.index(".text :")
    plain = load_board("stm32h7")
    assert "WEIGHTS" not in linker_script(plain, plain.runner("qemu"))


@pytest.mark.qemu
def test_weights_in_external_flash_run_bit_exact(tmp_path):
    run_dir = run_sweep(["stm32h7-qspi"], [SMALLEST], ["unfused"], max_inputs=2, jobs=1, run_dir=tmp_path)
    rows = pd.read_csv(run_dir / "bench.csv")
    assert (rows["status"] == "ok").all() and rows["outputs_match"].all()
    # the weight blob sits in the external flash, the internal flash holds only code
    assert (rows["external_flash_bytes"] > 400_000).all() and (rows["flash_bytes"] < 100_000).all()


def test_builds_of_other_files_or_options_never_share_a_folder(tmp_path, model_paths):
    """Two sweeps with other schedule options (or two files of one name) ran
    each other's images when they shared build/<board>/<model>/<variant>/."""
    import shutil

    from harness.report.bench import firmware_dir, plan_variant
    shipped = next(p for p in model_paths if p.stem == "mobilenetv2_w035_64")
    _, graph, plan = plan_variant("stm32f4", str(shipped), "msf")
    _, _, budget = plan_variant("stm32f4", str(shipped), "msf", {"ram_budget": 40000})
    assert plan.options == {} and budget.options == {"ram_budget": 40000}
    default = firmware_dir("stm32f4", graph, "msf", options=plan.options)
    assert default.parts[-3:] == ("stm32f4", "mobilenetv2_w035_64", "msf")
    assert firmware_dir("stm32f4", graph, "msf", options=budget.options) != default
    copy = tmp_path / shipped.name
    shutil.copy(shipped, copy)
    _, same_name, _ = plan_variant("stm32f4", str(copy), "unfused")
    assert same_name.name == graph.name
    assert firmware_dir("stm32f4", same_name, "msf") != default


@pytest.mark.qemu
def test_a_schedule_that_does_not_apply_is_a_row_and_the_sweep_goes_on(tmp_path):
    """A fully connected network (MLPerf Tiny's anomaly detector is one) has
    nothing to fuse or patch: those variants are `not-applicable` rows with
    the reason; the others run, on a seeded random input set (not an image),
    whose labels are not scored."""
    import numpy as np

    from harness.frontend.tflite_writer import Q
    from tests.helpers.tflite_builder import fully_connected_model
    rng = np.random.default_rng(3)
    model = tmp_path / "dense.tflite"
    model.write_bytes(fully_connected_model([1, 40], rng.integers(-127, 128, (10, 40), dtype=np.int8), [0.01],
                                            rng.integers(-300, 300, 10).astype(np.int32), Q(0.05, 2), Q(0.1, -1)))
    run_dir = run_sweep(["stm32h7"], [model], ["unfused", "fused", "patch", "reordered"], max_inputs=2, jobs=2,
                        run_dir=tmp_path / "run")
    rows = pd.read_csv(run_dir / "bench.csv")
    by_variant = rows.groupby("variant")["status"].agg(set).to_dict()
    assert by_variant == {"unfused": {"ok"}, "fused": {"not-applicable"}, "patch": {"not-applicable"},
                          "reordered": {"not-applicable"}}, rows[["variant", "status", "detail"]]
    fused = rows[rows["variant"] == "fused"].iloc[0]
    assert fused["detail"].startswith("fused does not apply to dense:")
    assert (rows["inputs"] == "random int8, seed 0 (2)").all() and (rows["reference"] == "litert-ref").all()
    assert rows["label"].isna().all()
    summary = summarize_bench(rows)
    assert summary.set_index("variant").loc["fused", "not_applicable"] == 2
    assert (run_dir / "plans" / "stm32h7-dense-unfused.json").is_file()


ZOO_STYLE = MODELS_DIR.parent / "tests" / "fixtures" / "models" / "mobilenetv2_w035_64_uint8_float32.tflite"


@pytest.mark.qemu
def test_a_keras_export_with_uint8_input_and_float_output_runs_every_variant(tmp_path):
    """The STM32 model zoo's MobileNets take uint8 pixels and give float
    scores (QUANTIZE and DEQUANTIZE at the edges, int8 inside): unmodified,
    every variant runs bit-exact, the arena as planned."""
    from harness.frontend.tflite_import import load_model
    graph = load_model(ZOO_STYLE)
    assert (graph.input.dtype, graph.output.dtype) == ("uint8", "float32")
    variants = ["unfused", "fused", "msf", "patch", "reordered"]
    run_dir = run_sweep(["stm32h7"], [ZOO_STYLE], variants, max_inputs=2, jobs=2, run_dir=tmp_path)
    rows = pd.read_csv(run_dir / "bench.csv")
    assert sorted(set(rows["variant"])) == sorted(variants)
    assert (rows["status"] == "ok").all(), rows[["variant", "status", "detail"]]
    assert (rows["arena_bytes_peak"] == rows["arena_bytes_planned"]).all()
    assert (rows["inputs"] == "fashion-mnist test images, 64x64x3 (2)").all()
    assert rows["label"].notna().all()                 # 10 classes: the shipped labels apply


@pytest.mark.qemu
def test_two_sweeps_of_one_clone_at_once_take_turns_at_a_build(tmp_path):
    """Both build the same (board, model, variant) folder at the same time:
    the lock makes the second wait and find the first's image up to date."""
    import subprocess
    import sys

    import numpy as np

    from tests.helpers.tflite_builder import patch_tunnel_model
    model = tmp_path / "two_at_once.tflite"     # a digest of its own: a build folder no other test uses
    model.write_bytes(patch_tunnel_model(np.random.default_rng(int.from_bytes(os.urandom(4), "little")),
                                         (12, 12), patches=2))
    code = ("import sys; from pathlib import Path; from harness.report.bench import run_sweep; "
            "run_sweep(['stm32f4'], [Path(sys.argv[1])], ['unfused'], max_inputs=1, jobs=1, run_dir=Path(sys.argv[2]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(model), str(tmp_path / f"run{k}")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for k in range(2)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out.decode()[-2000:]
    for k in range(2):
        rows = pd.read_csv(tmp_path / f"run{k}" / "bench.csv")
        assert (rows["status"] == "ok").all(), rows[["status", "detail"]]
    from harness.frontend.tflite_import import load_model
    digest = load_model(model).digest[:8]
    folder = Path(__file__).resolve().parents[2] / "build" / "stm32f4" / f"two_at_once-{digest}" / "unfused"
    assert (folder / "firmware.elf").is_file() and not list(folder.glob(".firmware.elf.*"))


@pytest.mark.qemu
def test_ctrl_c_stops_the_sweep_at_once_and_keeps_what_ran(tmp_path):
    """SIGINT to the process group, as a terminal's Ctrl-C: the bench stops
    within seconds, starts no emulator after it, prints no worker traceback,
    and the run folder has the rows and the summary of what ran."""
    import signal
    import subprocess
    import sys
    import time

    results = tmp_path / "results"
    code = ("import sys; from harness import paths; from pathlib import Path; "
            "import harness.report.bench as bench; bench.RESULTS_DIR = Path(sys.argv[1]); "
            "import tasks; from invoke import Collection, Program; "
            "Program(namespace=Collection.from_module(tasks)).run(['invoke', 'bench', '--board', 'stm32f4', "
            "'--model', 'mobilenetv2_w035_64', '--variant', 'unfused,fused,msf,patch', '--jobs', '2'])")
    proc = subprocess.Popen([sys.executable, "-c", code, str(results)], cwd=Path(__file__).resolve().parents[2],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:              # wait for the first rows
        csvs = list(results.glob("*/bench.csv"))
        if csvs and len(csvs[0].read_text().splitlines()) > 3:
            break
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGINT)
    stopped_at = time.monotonic()
    out, err = proc.communicate(timeout=120)
    print(f"stopped and summarised in {time.monotonic() - stopped_at:.1f} s")
    assert time.monotonic() - stopped_at < 60            # about 3 s on an idle 2-core machine, plots included
    text = err.decode()
    assert "Traceback" not in text, text[-3000:]
    assert proc.returncode == 130 and "interrupted after" in text
    run_dir = next(results.glob("2*"))
    rows = pd.read_csv(run_dir / "bench.csv")
    assert 0 < len(rows) < 4 * 32 and (run_dir / "summary.csv").is_file()


@pytest.mark.qemu
def test_a_model_with_two_outputs_runs_every_variant_bit_exact(tmp_path):
    """A detector's box and score heads: the device sends both outputs joined
    in order, every variant matches LiteRT, and no row claims a top-1 class."""
    from tests.schedules.test_multi_output import detector
    model = tmp_path / "detector.tflite"
    model.write_bytes(detector())
    variants = ["unfused", "fused", "msf", "patch", "reordered"]
    run_dir = run_sweep(["stm32h7"], [model], variants, max_inputs=2, jobs=2, run_dir=tmp_path / "run")
    rows = pd.read_csv(run_dir / "bench.csv")
    assert sorted(set(rows["variant"])) == sorted(variants)
    ran = rows[rows["status"] != "not-applicable"]
    assert set(ran["variant"]) >= {"unfused", "fused", "msf"}
    assert (ran["status"] == "ok").all(), ran[["variant", "status", "detail"]]
    assert (ran["arena_bytes_peak"] == ran["arena_bytes_planned"]).all()
    assert ran["top1"].isna().all() and ran["reference_top1"].isna().all()
