"""`invoke resolution`: the largest square input each schedule fits on each board.

The network is fully convolutional up to the global pool, so the same trained
int8 weights run at any resolution: harness.frontend.resize re-emits the shipped model
at each resolution (same weights and quantization, no TensorFlow). RAM and
bit-exactness depend only on the shapes; for accuracy at another resolution,
`invoke models --resolution N` fine-tunes and re-calibrates with TensorFlow.
For every resolution the plan predicts the RAM (arena + reserved stack +
static data); the largest resolution that fits is then linked (the linker
script holds the board's real RAM, so the link is the proof) and run on the
emulator against the host reference.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from harness.paths import BUILD_DIR, MODELS_DIR
from harness.errors import FusebenchError
from harness.schedules.msf import APP_STATIC_RESERVE

RESOLUTION_MODELS_DIR = BUILD_DIR / "models" / "resolutions"


BASE_MODELS = {0.35: "mobilenetv2_w035_144.tflite", 1.0: "mobilenetv2_w100_128.tflite"}


def base_models(width: Optional[float] = None, model: Optional[str] = None) -> list[Path]:
    """The models a sweep re-emits: `--model` (any models, e.g. `architectures`)
    or the shipped MobileNetV2 of `--width`."""
    if model:
        from harness.frontend.catalog import resolve_models
        return resolve_models(model)
    if width not in BASE_MODELS:
        raise FusebenchError(f"--width {width}: shipped widths are {', '.join(map(str, BASE_MODELS))}")
    return [MODELS_DIR / BASE_MODELS[width]]


def model_path(base: Path, resolution: int) -> Path:
    return RESOLUTION_MODELS_DIR / f"{Path(base).stem}-at-{resolution}.tflite"


def ensure_models(base: Path, resolutions: Sequence[int], log=print) -> dict[int, Path]:
    """The model re-emitted at each resolution."""
    from harness.frontend.resize import resize_model
    from harness.frontend.tflite_import import load_model
    graph = load_model(base)
    RESOLUTION_MODELS_DIR.mkdir(parents=True, exist_ok=True)
    paths = {}
    for r in resolutions:
        if r < 32 or r % 2:
            raise FusebenchError(f"resolution {r}: use even sizes of at least 32")
        path = model_path(base, r)
        data = resize_model(graph, r)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)
        paths[r] = path
    return paths


def predict(boards: Sequence[str], base: Path, resolutions: Sequence[int], variants: Sequence[str],
            options: Optional[dict] = None, log=print) -> pd.DataFrame:
    """One row per (resolution, variant): planned arena and predicted RAM per board."""
    from harness.targets.boards import load_board
    from harness.schedules import make_plan
    from harness.schedules.registry import NotApplicable
    from harness.frontend.tflite_import import load_model

    paths = ensure_models(base, resolutions, log)
    board_objs = [load_board(b) for b in boards]
    rows = []
    for r in resolutions:
        graph = load_model(paths[r])
        for v in variants:
            opts = dict(options or {})
            if v == "msf" and "ram_budget" not in opts:
                # whether some msf schedule fits: the least peak at any overhead (the
                # run then takes the fewest MACs that fit the board)
                opts.setdefault("max_overhead", 100.0)
            try:
                plan = make_plan(graph, v, **opts)
            except NotApplicable as e:
                log(f"resolution {r:>3} {v:<8} {e}")
                continue
            row = dict(base_model=Path(base).stem, resolution=r, variant=v, model=graph.name,
                       arena_bytes_planned=plan.arena_bytes, macs=plan.macs)
            for b in board_objs:
                # arena + the stack the linker reserves + the app's other static data
                row[f"ram_bytes_{b.name}"] = plan.arena_bytes + b.stack_bytes + APP_STATIC_RESERVE
                row[f"fits_{b.name}"] = row[f"ram_bytes_{b.name}"] <= b.ram.size
            rows.append(row)
            log(f"resolution {r:>3} {v:<8} arena {plan.arena_bytes:>8} B  ({Path(base).stem})")
    return pd.DataFrame(rows)


DEFAULT_MAX_RESOLUTION = 1024


def search_limits(boards: Sequence[str], base: Path, resolutions: Sequence[int], variants: Sequence[str],
                  options: Optional[dict], max_resolution: int, log=print) -> pd.DataFrame:
    """predict() over `resolutions`, then beyond them until no schedule fits any
    board (or `max_resolution`): the last resolution grows by half while any
    schedule still fits, and each schedule's limit is then narrowed by
    bisection to a multiple of the sweep's step. Plans only: cheap."""
    table = predict(boards, base, resolutions, variants, options, log)
    if not len(table):
        return table
    step = (resolutions[1] - resolutions[0]) if len(resolutions) > 1 else 16
    step = max(2, step + step % 2)

    def fitting_at(t: pd.DataFrame, r: int) -> bool:
        rows = t[t["resolution"] == r]
        return any(rows[f"fits_{b}"].any() for b in boards)

    def snap(r: float) -> int:
        return max(max(resolutions) + step, int(r) // step * step)

    def more(rs) -> None:
        nonlocal table
        rs = [r for r in sorted(set(rs)) if r not in set(table["resolution"])]
        if rs:
            table = pd.concat([table, predict(boards, base, rs, variants, options, log)], ignore_index=True)

    top = max(resolutions)
    while fitting_at(table, top) and top < max_resolution:
        top = min(max_resolution, snap(top * 1.5))
        more([top])
    for _ in range(12):                 # bisect each schedule's first misfit down to one step
        wanted = []
        for b in boards:
            for v in variants:
                rows = table[table["variant"] == v].sort_values("resolution")
                if not len(rows):
                    continue
                fits = rows[rows[f"fits_{b}"]]["resolution"]
                lo = int(fits.max()) if len(fits) else None
                above = rows[~rows[f"fits_{b}"] & (rows["resolution"] > (lo or 0))]["resolution"]
                if lo is None or not len(above):
                    continue
                hi = int(above.min())
                if hi - lo > step:
                    wanted.append(lo + (hi - lo) // 2 // step * step)
        if not wanted:
            break
        more(wanted)
    return table.sort_values(["resolution", "variant"], kind="stable").reset_index(drop=True)


def largest_fitting(table: pd.DataFrame, board: str, variant: str) -> Optional[int]:
    sel = table[(table["variant"] == variant) & table[f"fits_{board}"]]
    return int(sel["resolution"].max()) if len(sel) else None


def plot_resolution(table: pd.DataFrame, boards: Sequence[str], path: Path, runs: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.targets.boards import load_board
    fig, ax = plt.subplots(figsize=(9, 5))
    for v, g in table.groupby("variant", sort=False):
        line, = ax.plot(g["resolution"], g["arena_bytes_planned"] / 1024, marker="o", label=f"{v}: planned arena")
        for (board, variant), (res, ok) in runs.items():
            if variant == v and res is not None:
                y = float(g[g["resolution"] == res]["arena_bytes_planned"].iloc[0]) / 1024
                said = {True: "bit-exact", False: "FAILED", "flash": "weights exceed flash",
                        None: "planned"}[ok]
                ax.annotate(f"{res}x{res} on {board}: {said}", (res, y),
                            textcoords="offset points", xytext=(5, 5 if board.endswith("h7") else -12),
                            fontsize=8, color=line.get_color())
    for b in boards:
        board = load_board(b)
        usable = (board.ram.size - board.stack_bytes - APP_STATIC_RESERVE) / 1024
        ax.axhline(usable, color="black", linestyle="--", linewidth=1)
        ax.text(table["resolution"].min(), usable, f" {b}: RAM left for the arena ({usable:.0f} KiB)",
                va="bottom", fontsize=8)
    ax.set_xlabel("input resolution (square, pixels)")
    ax.set_ylabel("arena (KiB)")
    ax.set_title(f"Peak RAM vs input resolution ({table['base_model'].iloc[0]}, same weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def resolution_sweep(boards: Sequence[str], width: float = 0.35, variants: Sequence[str] = ("unfused", "fused"),
                     resolutions: Sequence[int] = tuple(range(64, 321, 16)), max_inputs: int = 3,
                     options: Optional[dict] = None, run: bool = True, log=print,
                     model: Optional[str] = None, max_resolution: int = DEFAULT_MAX_RESOLUTION) -> Path:
    """Per base model (`model`, else the shipped MobileNetV2 of `width`): the
    planned RAM at every resolution, and past them until nothing fits (up to
    `max_resolution`), the largest that fits each board per schedule (linked
    and run bit-exact on the emulator), one plot per model."""
    from harness.report.bench import new_run_dir, run_sweep

    bases = base_models(width, model)
    run_dir = new_run_dir()
    tables, summaries, failed_runs = [], [], []
    for base in bases:
        table = search_limits(boards, base, resolutions, variants, options, max_resolution, log)
        tables.append(table)
        pd.concat(tables).to_csv(run_dir / "resolution.csv", index=False)
        runs: dict = {}
        failed: dict = {}
        unfit: dict = {}
        for b in boards:
            for v in variants:
                res = largest_fitting(table, b, v) if len(table) else None
                runs[(b, v)] = (res, None)
                if res is None or not run:
                    continue
                log(f"resolution: running {Path(base).stem} {v} at {res}x{res} on {b}")
                try:
                    run_sweep([b], [model_path(base, res)], [v], max_inputs=max_inputs, options=options,
                              run_dir=run_dir, jobs=1)
                except FusebenchError as exc:          # keep going: the other runs still count
                    log(f"resolution: {v} at {res}x{res} on {b} failed: {exc}")
                    failed[(b, v)] = str(exc)
        if run and (run_dir / "bench.csv").exists():
            rows = pd.read_csv(run_dir / "bench.csv")
            for (b, v), (res, _) in runs.items():
                if res is None:
                    continue
                name = model_path(base, res).stem
                sel = rows[(rows["board"] == b) & (rows["variant"] == v) & (rows["model"] == name)]
                if len(sel) and (sel["status"] == "does-not-fit").all():
                    # the RAM fits but the weights do not fit the board's flash: no run, no failure
                    runs[(b, v)] = (res, "flash")
                    unfit[(b, v)] = str(sel["detail"].iloc[0])
                    continue
                runs[(b, v)] = (res, bool(len(sel)) and bool((sel["status"] == "ok").all())
                                and (b, v) not in failed)
        if len(table):
            plot_resolution(table, boards, run_dir / ("resolution.png" if len(bases) == 1
                                                      else f"resolution-{Path(base).stem}.png"), runs)
        summaries += [dict(base_model=Path(base).stem, board=b, variant=v, largest_resolution=res,
                           ran_bit_exact=None if ok == "flash" else ok,
                           detail=unfit.get((b, v), f"fits at --max-resolution {max_resolution}: a larger one "
                                            "may fit" if res is not None and res >= max_resolution else ""))
                      for (b, v), (res, ok) in runs.items()]
        failed_runs += [ok is False for _, ok in runs.values()]
    summary = pd.DataFrame(summaries)
    summary.to_csv(run_dir / "resolution-summary.csv", index=False)
    log(summary.to_string(index=False))
    if run and any(failed_runs):
        raise FusebenchError(f"a largest-resolution run failed; see {run_dir / 'bench.csv'}")
    return run_dir
