"""Fused stages: geometry, planning, and bit-exactness of the generated tile
loops (compiled for the host) against LiteRT, on random block chains."""
from __future__ import annotations

import numpy as np
import pytest

from harness.backend.codegen import generate_sources
from harness.schedules import make_plan
from harness.errors import FusebenchError
from harness.schedules.fused import plan_fused
from harness.schedules.geometry import StageGeometry, block_op_ranges
from harness.backend.hostmodel import build_host_model, run_host_model
from harness.schedules.plan import check_plan, plan_schedule
from harness.frontend.reference import reference_outputs
from tests.helpers.hostcheck import assert_plan_bit_exact
from tests.helpers.tflite_builder import inverted_residual_chain_model
from harness.frontend.tflite_import import load_model, load_model_bytes

# (input hw, in channels, first conv, blocks (expansion, out channels, stride), tile, mode)
CASES = [
    ((13, 11), 3, 8, [(1, 8, 1), (6, 8, 1)], (1, 1), "recompute"),          # 1-pixel tiles
    ((13, 11), 3, 8, [(1, 8, 1), (6, 8, 1)], (1, 99), "linebuffer"),
    ((16, 16), 4, None, [(6, 4, 1), (4, 4, 1)], (3, 5), "recompute"),       # tiles not dividing the map
    ((17, 15), 5, None, [(3, 7, 2), (6, 7, 1)], (2, 99), "linebuffer"),     # stride-2 depthwise, odd map
    ((17, 15), 5, None, [(3, 7, 2), (6, 7, 1)], (4, 3), "recompute"),
    ((20, 20), 3, 6, [(1, 5, 1), (6, 6, 2), (5, 6, 1), (2, 6, 1)], (3, 99), "linebuffer"),
    ((9, 9), 6, None, [(2, 6, 1), (3, 9, 2), (4, 9, 1)], (2, 2), "recompute"),
    # deep line-buffered stages: the lead-in fills the pipeline row by row
    ((19, 17), 3, 8, [(1, 8, 1), (6, 8, 2), (6, 8, 1), (4, 12, 2)], (1, 3), "linebuffer"),
    ((21, 21), 3, 8, [(6, 8, 2), (6, 8, 1), (6, 8, 1)], (2, 99), "linebuffer"),
]


def _run_fused(tmp_path, data: bytes, stages_ops, tile, mode, n_inputs=3):
    path = tmp_path / "chain.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    stages = [StageGeometry(graph, ops).schedule(tile[0], tile[1], mode) for ops in stages_ops(graph)]
    plan = plan_schedule(graph, stages, variant="fused")
    assert check_plan(plan) == []
    gen = tmp_path / "gen"
    generate_sources(graph, plan, None, gen)
    rng = np.random.default_rng(7)
    xs = [rng.integers(-128, 128, graph.input.shape, dtype=np.int8) for _ in range(n_inputs)]
    ours = run_host_model(build_host_model(gen), xs, graph.output.nbytes)
    refs = reference_outputs(path, xs)
    return graph, plan, ours, refs


@pytest.mark.parametrize("case", range(len(CASES)))
def test_fused_chain_is_bit_exact(tmp_path, case):
    hw, c_in, first, blocks, tile, mode = CASES[case]
    data = inverted_residual_chain_model(np.random.default_rng(case), hw, c_in, blocks, first)

    def whole_chain(graph):                     # one stage: everything
        return [list(range(len(graph.ops)))]

    graph, plan, ours, refs = _run_fused(tmp_path, data, whole_chain, tile, mode)
    assert len(plan.stages) == 1 and len(plan.stages[0].inner) == len(graph.ops) - 1
    for o, r in zip(ours, refs):
        np.testing.assert_array_equal(o, r.reshape(-1))


def test_stage_ending_mid_network_and_residual_across_stages(tmp_path):
    """Two stages split inside a chain, the second starting at a block's
    projection, so the residual input comes from before the stage."""
    data = inverted_residual_chain_model(np.random.default_rng(11), (14, 14), 4, [(6, 4, 1), (6, 4, 1)], None)

    def split(graph):
        # ops: [expand, dw, project, add] x 2 -> stage A = block 0, then expand/dw of
        # block 1 layer by layer, stage B = project + add of block 1, which reads
        # block 1's input (alive since stage A) whole from the arena
        return [list(range(0, 4)), list(range(6, 8))]

    graph, plan, ours, refs = _run_fused(tmp_path, data, split, (2, 3), "recompute")
    for o, r in zip(ours, refs):
        np.testing.assert_array_equal(o, r.reshape(-1))
    assert plan.stages[1].inputs == [graph.ops[5].outputs[0], graph.ops[3].outputs[0]] or \
        set(plan.stages[1].inputs) == {graph.ops[5].outputs[0], graph.ops[3].outputs[0]}


@pytest.mark.parametrize("tile,mode", [((2, 3), "recompute"), ((1, 99), "linebuffer")])
def test_stage_ending_inside_a_residual_block_writes_the_block_input_whole(tmp_path, tile, mode):
    """A boundary inside block 1: the stage computes block 0 and block 1's
    expansion and depthwise; block 0's output (block 1's residual input) is
    also used after the stage, by the add, so it is written whole and kept."""
    data = inverted_residual_chain_model(np.random.default_rng(12), (12, 10), 4, [(6, 4, 1), (6, 4, 1)], None)

    def split(graph):
        return [list(range(0, 6))]

    graph, plan, ours, refs = _run_fused(tmp_path, data, split, tile, mode)
    for o, r in zip(ours, refs):
        np.testing.assert_array_equal(o, r.reshape(-1))
    st = plan.stages[0]
    block0_out, dw1_out = graph.ops[3].outputs[0], graph.ops[5].outputs[0]
    assert set(st.outputs) == {block0_out, dw1_out} and st.output == dw1_out
    assert block0_out not in st.inner
    # the residual input stays allocated until the add (op 7) reads it
    alloc = plan.allocation_of(block0_out)
    assert alloc.first_step == 0 and alloc.last_step == 7


def test_linebuffer_needs_no_recomputation_and_recompute_costs_macs():
    data = inverted_residual_chain_model(np.random.default_rng(3), (32, 32), 8, [(6, 8, 1)], None)
    graph = load_model_bytes(data, "block.tflite")
    geo = StageGeometry(graph, list(range(len(graph.ops))))
    line = geo.schedule(1, 32, "linebuffer")
    re1 = geo.schedule(1, 32, "recompute")
    assert line.macs == line.base_macs
    # 1-row strips recompute the 2 halo rows of the expansion for every row: 3x its MACs
    expand_macs = graph.macs(graph.ops[0])
    assert re1.macs - re1.base_macs == 2 * expand_macs - 2 * expand_macs // 32
    assert line.buffer_bytes == re1.buffer_bytes       # both hold 3 rows of the expansion


def test_line_buffers_hold_what_one_band_reads_however_deep_the_stage():
    """Four stride-1 blocks in 1-row line-buffered strips: every buffer holds at
    most the 3 rows a 3x3 depthwise reads, at any depth, and nothing is
    computed twice. (Without the lead-in, the first strip would compute the
    whole receptive field of the first output row: 9 rows deep in the stage.)
    A block output holds 2 rows: the add reads row r while the next expansion
    is already at row r + 1."""
    data = inverted_residual_chain_model(np.random.default_rng(4), (16, 16), 4, [(6, 4, 1)] * 4, None)
    graph = load_model_bytes(data, "deep.tflite")
    stage = StageGeometry(graph, list(range(len(graph.ops)))).schedule(1, 99, "linebuffer")
    assert stage.macs == stage.base_macs
    assert max(rows for _, rows, _, _ in stage.buffers) == 3


def test_stage_outputs_are_the_tensors_used_after_it():
    data = inverted_residual_chain_model(np.random.default_rng(5), (8, 8), 4, [(6, 4, 1), (6, 4, 1)], None)
    graph = load_model_bytes(data, "blocks.tflite")
    assert StageGeometry(graph, [0, 1]).outputs == [graph.ops[1].outputs[0]]
    # block 0's output also feeds block 1's add (op 7): written whole as a second output
    assert len(StageGeometry(graph, [0, 1, 2, 3, 4]).outputs) == 2
    with pytest.raises(FusebenchError, match="consecutive"):
        StageGeometry(graph, [0, 2])


@pytest.mark.slow
def test_fused_plan_on_shipped_models_halves_ram_within_overhead(model_paths):
    for path in model_paths:
        graph = load_model(path)
        unfused = make_plan(graph, "unfused")
        fused = plan_fused(graph)
        assert check_plan(fused) == [], path.name
        assert fused.arena_bytes <= 0.5 * unfused.arena_bytes, (path.name, fused.arena_bytes)
        assert fused.macs <= 1.15 * fused.base_macs
        # user overrides are honoured
        pinned = plan_fused(graph, blocks="0-1", tile="2x4", mode="recompute")
        assert len(pinned.stages) == 1 and pinned.stages[0].mode == "recompute"
        assert (pinned.stages[0].tile_h, pinned.stages[0].tile_w) == (2, 4)
        assert pinned.stages[0].ops == block_op_ranges(graph)[0] + block_op_ranges(graph)[1] \
            or pinned.stages[0].ops[0] == 0


def test_bad_fused_options_are_clear_errors(model_paths):
    graph = load_model(model_paths[0])
    for kwargs, msg in ((dict(blocks="5-2"), "blocks"), (dict(blocks="x"), "blocks"),
                        (dict(tile="0x3"), "tile"), (dict(mode="zigzag"), "mode"),
                        (dict(max_overhead=-1), "overhead")):
        with pytest.raises(FusebenchError, match=msg):
            plan_fused(graph, **kwargs)


def test_fused_on_a_depthwise_separable_chain_without_residuals(tmp_path):
    """MobileNetV1 / DS-CNN: depthwise and pointwise layers in turn, no
    expansion. Each pointwise is one block's projection, never also the next
    block's expansion, so the blocks do not overlap and the stages fuse them."""
    data = inverted_residual_chain_model(np.random.default_rng(11), (20, 18), 3,
                                         [(1, 12, 1), (1, 16, 2), (1, 24, 1), (1, 24, 2)], 8)
    path = tmp_path / "v1.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    ranges = block_op_ranges(graph)
    assert [len(r) for r in ranges] == [2, 2, 2, 2]
    assert all(a[-1] < b[0] for a, b in zip(ranges, ranges[1:]))      # disjoint, in order
    plan = plan_fused(graph)
    assert check_plan(plan) == [] and plan.stages
    assert plan.arena_bytes < make_plan(graph, "unfused").arena_bytes
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen")


@pytest.mark.parametrize("variant", ["fused", "msf"])
def test_explicit_pads_in_fused_stages_with_bands_of_padding_only(tmp_path, variant):
    """PyTorch exports pad every 3x3 layer with an explicit PAD (one pixel all
    round) and run it VALID. In a line-buffered stage the PAD's first band is
    one row of padding only: its input window is empty, which the kernel must
    take (MobileNetV2 1.0@224 from PyTorch returned -1 from fb_pad_s8)."""
    data = inverted_residual_chain_model(np.random.default_rng(1), (16, 16), 3,
                                         [(1, 8, 1), (6, 12, 2), (6, 12, 1), (6, 16, 2)], 8, explicit_pad=True)
    path = tmp_path / "padded.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    assert [op.kind for op in graph.ops[:3]] == ["PAD", "CONV_2D", "PAD"]
    plan = make_plan(graph, variant)
    pads = [i for st in plan.stages for i in st.ops if graph.ops[i].kind == "PAD"]
    assert pads and any(st.mode == "linebuffer" for st in plan.stages), plan.stages
    assert plan.arena_bytes < make_plan(graph, "unfused").arena_bytes
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen")


@pytest.mark.parametrize("variant", ["fused", "msf", "patch"])
def test_a_depthwise_with_a_depth_multiplier_runs_in_every_tiled_schedule(tmp_path, variant):
    """person_detect's first depthwise has depth multiplier 8 (and micro_speech's):
    such a layer inside a tiled stage reads input channel ic for outputs
    ic*M .. ic*M+M-1 on every tile."""
    data = inverted_residual_chain_model(np.random.default_rng(8), (18, 14), 3,
                                         [(1, 12, 1, 4), (1, 16, 2, 2), (2, 16, 1)], 6)
    path = tmp_path / "multiplier.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    wide = [op.index for op in graph.ops if op.kind == "DEPTHWISE_CONV_2D"
            and op.options["depth_multiplier"] > 1]
    assert len(wide) == 2
    plan = make_plan(graph, variant)
    assert any(i in st.ops for st in plan.stages for i in wide), (variant, [st.ops for st in plan.stages])
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen")


def test_squeeze_excite_blocks_end_a_fused_stage_at_the_depthwise(tmp_path):
    """MobileNetV3: the squeeze is a mean over the whole depthwise map, so a
    fused stage ends at the depthwise output of a block with squeeze-and-excite;
    the branch, gate and projection run layer by layer. The stem convolution
    still fuses with the block's expansion and depthwise, and the outputs stay
    bit-exact."""
    data = inverted_residual_chain_model(np.random.default_rng(21), (24, 20), 3,
                                         [(4, 8, 2), (1, 8, 1), (3, 12, 2)], 8, squeeze_excite=(0, 2))
    path = tmp_path / "se.tflite"
    path.write_bytes(data)
    graph = load_model(path)
    se_blocks = [b for b in graph.blocks if b.se]
    assert len(graph.blocks) == 3 and len(se_blocks) == 2
    for b in se_blocks:
        assert graph.ops[b.se[0]].kind == "MEAN" and graph.ops[b.se[-1]].kind == "MUL"
        assert [graph.ops[i].kind for i in b.activations] == ["HARD_SWISH", "HARD_SWISH"]
        assert b.fusable_ops[-1] == b.activations[-1] and b.project not in b.fusable_ops
    plan = plan_fused(graph)
    assert check_plan(plan) == [] and plan.stages
    means = [op.index for op in graph.ops if op.kind == "MEAN"]
    assert not any(i in st.ops for st in plan.stages for i in means)
    assert any(n.kind == "fused-se-boundary" for n in plan.notes)
    assert plan.arena_bytes < make_plan(graph, "unfused").arena_bytes
    assert_plan_bit_exact(graph, plan, path, tmp_path / "gen")
    with pytest.raises(FusebenchError, match="no valid fused stage"):
        plan_fused(graph, blocks="0-1")           # a stage across a squeeze-and-excite
    for variant in ("msf", "unfused"):
        assert_plan_bit_exact(graph, make_plan(graph, variant), path, tmp_path / variant)
