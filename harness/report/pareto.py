"""`invoke pareto`: the whole front of peak RAM against extra MACs of a model
(the msf search), with the `unfused` and `fused` points and the published
msf-CNN points on the same axes; the front as CSV, the picture as PNG."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import pandas as pd

from harness.errors import FusebenchError

# msf-CNN's published front for MobileNetV2 w0.35 at 144x144 (int8): peak RAM
# in KB against total MACs relative to layer by layer; its layer-by-layer peak
# is 194.4 KB. Their figures leave the input image out of RAM.
MSF_CNN_W035_144 = {"layer_by_layer_kb": 194.4,
                    "points": [(83.1, 1.02), (25.8, 1.25), (15.2, 1.38), (8.56, 1.68)]}


def _published_applies(graph) -> bool:
    return graph.name.startswith("mobilenetv2_w035") and tuple(graph.input.shape[1:3]) == (144, 144)


def front_table(graph, stream_input: bool = True, plan_points: bool = True) -> tuple[pd.DataFrame, dict]:
    """The msf front as rows (predicted peak; with `plan_points` also the
    packed arena of each point's plan) and the search timing."""
    from harness.schedules.msf import FusionSpace
    t0 = time.perf_counter()
    space = FusionSpace(graph, stream_input=stream_input)
    t1 = time.perf_counter()
    front = space.front()
    t2 = time.perf_counter()
    rows = []
    for k, s in enumerate(front):
        row = dict(model=graph.name, point=k, peak_bytes_predicted=s.peak_bytes, macs=s.macs,
                   mac_ratio=s.macs / space.base_macs,
                   fused_stages=sum(e.mode != "layer" for e in s.edges),
                   schedule="; ".join(e.describe() for e in s.edges if e.mode != "layer"))
        if plan_points:
            row["arena_bytes_planned"] = space.realize(s).arena_bytes
        rows.append(row)
    timing = dict(edges=sum(len(v) for v in space.edges.values()), price_s=t1 - t0, walk_s=t2 - t1,
                  base_macs=space.base_macs, ops=len(graph.ops))
    return pd.DataFrame(rows), timing


def plot_front(table: pd.DataFrame, points: dict, path: Path, title: str,
               published: Optional[dict] = None, unfused_bytes: Optional[int] = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if published else 1, figsize=(13 if published else 7, 5), squeeze=False)
    ax = axes[0][0]
    y = table.get("arena_bytes_planned", table["peak_bytes_predicted"]) / 1024
    ax.step(table["mac_ratio"], y, where="post", marker="o", markersize=3, label="msf front (this repo, planned arena)")
    for name, (ratio, size) in points.items():
        ax.scatter([ratio], [size / 1024], s=60, marker="s", zorder=3, label=f"{name}: {size / 1024:.1f} KiB")
    ax.set_xlabel("MACs relative to layer by layer")
    ax.set_ylabel("peak RAM (KiB)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title)
    ax.legend(fontsize=8)
    if published:
        # Absolute sizes differ (models and accounting differ): compare fractions of layer by layer.
        ax2 = axes[0][1]
        ax2.step(table["mac_ratio"], y * 1024 / unfused_bytes, where="post", marker="o", markersize=3,
                 label="msf front (this repo) / our unfused arena")
        px = [r for _, r in published["points"]]
        py = [kb / published["layer_by_layer_kb"] for kb, _ in published["points"]]
        ax2.scatter(px, py, marker="*", s=120, color="crimson", zorder=3,
                    label=f"msf-CNN published / its layer by layer ({published['layer_by_layer_kb']} KB)")
        for (kb, r), fy in zip(published["points"], py):
            ax2.annotate(f"{kb} KB", (r, fy), textcoords="offset points", xytext=(5, 4), fontsize=8)
        for name, (ratio, size) in points.items():
            ax2.scatter([ratio], [size / unfused_bytes], s=60, marker="s", zorder=3, label=name)
        ax2.set_xlabel("MACs relative to layer by layer")
        ax2.set_ylabel("peak RAM / layer-by-layer peak")
        ax2.set_yscale("log")
        ax2.grid(alpha=0.3, which="both")
        ax2.set_title("as fractions of each one's layer-by-layer peak\n(msf-CNN leaves the input out; "
                      "our msf streams it)")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pareto_command(model: Optional[str] = None, stream_input: bool = True, out: Optional[str] = None,
                   resolution: Optional[int] = None, measure: Optional[str] = None, board: str = "stm32h7",
                   max_inputs: Optional[int] = None, log=print) -> Path:
    """Front CSV and PNG per model into a run folder; `resolution` re-emits each
    model at that square input size first (same weights, harness.frontend.resize).
    `measure` ('2,25,40,70', percent): also build and run msf at those overhead
    limits on `board` and write msf-limits.csv."""
    from harness.report.bench import new_run_dir
    from harness.frontend.catalog import resolve_models
    from harness.schedules import make_plan
    from harness.frontend.tflite_import import load_model

    run_dir = Path(out) if out else new_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    tables = []
    timings = []
    for path in resolve_models(model):
        graph = load_model(path)
        if resolution:
            from harness.frontend.resize import resize_model
            from harness.frontend.tflite_import import load_model_bytes
            graph = load_model_bytes(resize_model(graph, int(resolution)), f"{graph.name}_at_{resolution}")
            graph.name = f"{path.stem}-at-{resolution}"
        table, timing = front_table(graph, stream_input)
        timings.append(dict(model=graph.name, **timing))
        # the other schedules as single points on the same axes
        from harness.schedules import NotApplicable, schedule_names
        others = {}
        for v in schedule_names():
            if v != "msf":
                try:
                    others[v] = make_plan(graph, v)
                except NotApplicable:
                    continue             # no plan of that kind for this model: no point
        unfused = others["unfused"]
        points = {v: (p.macs / p.base_macs, p.arena_bytes) for v, p in others.items()}
        extra = pd.DataFrame([dict(model=graph.name, point=-1, peak_bytes_predicted=p.lower_bound_bytes,
                                   macs=p.macs, mac_ratio=p.macs / p.base_macs, arena_bytes_planned=p.arena_bytes,
                                   fused_stages=len(p.stages), schedule=name)
                              for name, p in others.items()])
        table = table.assign(kind="msf")
        extra = extra.assign(kind=extra["schedule"])
        published = MSF_CNN_W035_144 if _published_applies(graph) else None
        rows = [table, extra]
        if published:
            rows.append(pd.DataFrame([dict(model=graph.name, point=-1, kind="msf-CNN (published)",
                                           peak_bytes_predicted=round(kb * 1000), mac_ratio=r,
                                           schedule=f"{kb} KB of {published['layer_by_layer_kb']} KB")
                                      for kb, r in published["points"]]))
        full = pd.concat(rows, ignore_index=True)
        full["fraction_of_unfused"] = full["arena_bytes_planned"].fillna(full["peak_bytes_predicted"]) / unfused.arena_bytes
        if published:
            sel = full["kind"] == "msf-CNN (published)"
            full.loc[sel, "fraction_of_unfused"] = full.loc[sel, "peak_bytes_predicted"] / (
                published["layer_by_layer_kb"] * 1000)
        csv = run_dir / f"pareto-{graph.name}.csv"
        full.to_csv(csv, index=False)
        png = plot_front(table, points, run_dir / f"pareto-{graph.name}.png",
                         f"{graph.name}: peak RAM vs MACs", published, unfused.arena_bytes)
        log(f"{graph.name}: {len(table)} front points, search {timing['price_s'] + timing['walk_s']:.2f} s "
            f"({timing['edges']} edges over {timing['ops']} ops); least peak "
            f"{int(table['arena_bytes_planned'].min())} B at {table['mac_ratio'].iloc[0]:.2f}x MACs; "
            + ", ".join(f"{v} {p.arena_bytes} B" for v, p in others.items()))
        log(f"wrote {csv}\nwrote {png}")
        tables.append(full)
    if not tables:
        raise FusebenchError("no model to search")
    pd.DataFrame(timings).to_csv(run_dir / "pareto-search-time.csv", index=False)
    if measure:
        if resolution:
            raise FusebenchError("--measure runs the shipped models; leave out --resolution")
        try:
            limits = [float(v.strip().rstrip("%")) / 100 for v in str(measure).split(",") if v.strip()]
        except ValueError:
            raise FusebenchError(f"--measure '{measure}': expected percentages such as 2,25,40,70") from None
        frames = [measure_limits(str(p), board, limits, max_inputs, run_dir / f"measure-{p.stem}",
                                 stream_input, log) for p in resolve_models(model)]
        result = pd.concat(frames, ignore_index=True)
        result.to_csv(run_dir / "msf-limits.csv", index=False)
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            log(result[["model", "max_overhead", "arena_bytes_peak", "planned_equals_measured",
                        "fraction_of_unfused", "msf_cnn_fraction", "planned_mac_overhead",
                        "measured_count_overhead", "no_worse_than_msf_cnn"]].to_string(index=False))
        log(f"wrote {run_dir / 'msf-limits.csv'}")
    return run_dir


# msf-CNN's MAC ratio for each overhead limit the issue names, and its point there.
PUBLISHED_AT_LIMIT = {0.02: (83.1, 1.02), 0.25: (25.8, 1.25), 0.40: (15.2, 1.38), 0.70: (8.56, 1.68)}


def measure_limits(model: str, board: str, limits: list[float], max_inputs: Optional[int], run_dir: Path,
                   stream_input: bool = True, log=print) -> pd.DataFrame:
    """Build and run `msf` at each overhead limit (and `unfused` once) on a board;
    one row per limit: measured arena peak as a fraction of unfused's, measured
    instruction overhead beside the planned MAC overhead, and msf-CNN's figures."""
    from harness.report.bench import run_sweep
    from harness.frontend.catalog import resolve_models
    from harness.report.tables import summarize_bench

    (path,) = resolve_models(model)[:1]
    runs = [("unfused", {}, run_dir / "unfused")] + [
        (f"msf@{100 * lim:g}%", {"max_overhead": lim, "stream_input": stream_input}, run_dir / f"msf-{100 * lim:g}")
        for lim in limits]
    summaries = {}
    for name, options, folder in runs:
        log(f"pareto: measuring {name} on {board}")
        variant = "unfused" if name == "unfused" else "msf"
        out = run_sweep([board], [path], [variant], max_inputs=max_inputs, options=options, run_dir=folder, jobs=1)
        rows = pd.read_csv(out / "bench.csv")
        s = summarize_bench(rows).iloc[0]
        if s["ok"] != len(rows):
            raise FusebenchError(f"{name} on {board}: {len(rows) - s['ok']} of {len(rows)} runs not bit-exact; "
                                 f"see {out / 'bench.csv'}")
        summaries[name] = s
    base = summaries["unfused"]
    count_col = next(c for c in base.index if str(c).endswith("_median"))
    table = []
    for lim in limits:
        s = summaries[f"msf@{100 * lim:g}%"]
        kb, ratio = PUBLISHED_AT_LIMIT.get(round(lim, 2), (None, None))
        table.append(dict(
            model=path.stem, board=board, max_overhead=lim,
            arena_bytes_planned=int(s["arena_bytes_planned"]), arena_bytes_peak=int(s["arena_bytes_peak"]),
            planned_equals_measured=int(s["arena_bytes_planned"]) == int(s["arena_bytes_peak"]),
            unfused_arena_bytes_peak=int(base["arena_bytes_peak"]),
            fraction_of_unfused=int(s["arena_bytes_peak"]) / int(base["arena_bytes_peak"]),
            msf_cnn_fraction=(kb / MSF_CNN_W035_144["layer_by_layer_kb"]) if kb else None,
            msf_cnn_kb=kb, msf_cnn_mac_ratio=ratio,
            planned_mac_overhead=int(s["macs"]) / int(base["macs"]) - 1,
            measured_count_overhead=int(s[count_col]) / int(base[count_col]) - 1,
            count=count_col.replace("_median", ""), runs_bit_exact=int(s["ok"])))
    result = pd.DataFrame(table)
    result["no_worse_than_msf_cnn"] = result["fraction_of_unfused"] <= result["msf_cnn_fraction"]
    return result
