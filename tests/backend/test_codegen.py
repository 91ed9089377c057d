"""Generated C, compiled for the host, is bit-exact with LiteRT on the shipped
models: this checks code generation and the planned arena offsets."""
from __future__ import annotations

import numpy as np

from harness.backend.codegen import WeightBlob, generate_sources
from harness.frontend.inputs import load_default_inputs
from harness.backend.hostmodel import build_host_model, run_host_model
from harness.schedules.unfused import plan_layer_by_layer
from harness.frontend.reference import reference_outputs
from harness.frontend.tflite_import import load_model


def test_generated_model_matches_reference_on_every_shipped_model(model_paths, tmp_path):
    rng = np.random.default_rng(1)
    for path in model_paths:
        graph = load_model(path)
        plan = plan_layer_by_layer(graph)
        gen = tmp_path / graph.name
        generate_sources(graph, plan, None, gen)
        header = (gen / "fb_model.h").read_text()
        assert f"#define FB_ARENA_BYTES  {plan.arena_bytes}" in header
        _, h, w, _ = graph.input.shape
        inputs = [s.data for s in load_default_inputs(h, w, graph.input.scale, graph.input.zero_point)[:3]]
        inputs.append(rng.integers(-128, 128, graph.input.shape, dtype=np.int8))
        ours = run_host_model(build_host_model(gen), inputs, graph.output.nbytes)
        refs = reference_outputs(path, inputs)
        for i, (o, r) in enumerate(zip(ours, refs)):
            assert np.array_equal(o, r), f"{path.name} input {i}: {o} != {r}"


def test_regeneration_leaves_files_untouched(model_paths, tmp_path):
    graph = load_model(model_paths[0])
    plan = plan_layer_by_layer(graph)
    paths = generate_sources(graph, plan, None, tmp_path)
    stamps = [p.stat().st_mtime_ns for p in paths]
    generate_sources(graph, plan, None, tmp_path)
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_weight_blob_aligns_and_deduplicates():
    blob = WeightBlob()
    a = blob.add(np.arange(3, dtype=np.int8))
    b = blob.add(np.arange(4, dtype=np.int32), align=8)
    c = blob.add(np.arange(3, dtype=np.int8))
    assert (a, b, c) == (0, 8, 0)
    data = blob.bytes()
    assert np.frombuffer(data[8:24], dtype=np.int32).tolist() == [0, 1, 2, 3]
