"""Test helper: generate a plan's C, build it for the host, run it, and check
it byte for byte against LiteRT's reference kernels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.backend.codegen import generate_sources
from harness.backend.hostmodel import build_host_model, run_host_model
from harness.frontend.reference import reference_outputs


def assert_plan_bit_exact(graph, plan, model_path: Path, out_dir: Path, n_inputs: int = 3, seed: int = 0) -> None:
    generate_sources(graph, plan, None, out_dir)
    rng = np.random.default_rng(seed)
    xs = [rng.integers(-128, 128, graph.input.shape, dtype=np.int8) for _ in range(n_inputs)]
    ours = run_host_model(build_host_model(out_dir), xs, graph.output_bytes)
    for k, (o, r) in enumerate(zip(ours, reference_outputs(model_path, xs))):
        np.testing.assert_array_equal(o, r.reshape(-1), err_msg=f"{plan.variant}, input {k}")
