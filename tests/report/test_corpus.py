"""`invoke corpus`: every model in a folder, one line each."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.frontend.tflite_writer import Q
from harness.report.corpus import corpus_command
from tests.helpers.tflite_builder import fully_connected_model, inverted_residual_chain_model


@pytest.mark.qemu
def test_every_model_gets_one_line(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    rng = np.random.default_rng(1)
    (folder / "chain.tflite").write_bytes(inverted_residual_chain_model(rng, (12, 12), 3, [(1, 8, 1), (4, 8, 1)], 8))
    (folder / "dense.tflite").write_bytes(fully_connected_model(
        [1, 24], rng.integers(-127, 128, (5, 24), dtype=np.int8), [0.01], None, Q(0.05, 0), Q(0.1, 0)))
    (folder / "broken.tflite").write_bytes(b"not a model at all")
    said = []
    run_dir = corpus_command(str(folder), board="stm32h7", fallback_board=None, variants=["unfused", "fused"],
                             max_inputs=1, jobs=2, run_dir=tmp_path / "run", log=said.append)
    table = pd.read_csv(run_dir / "corpus.csv").set_index("model")
    assert table.loc["broken", "status"] == "refused" and "not a TFLite model" in table.loc["broken", "detail"]
    assert table.loc["chain", "status"] == "ok" and table.loc["chain", "variants_ok"] == "unfused, fused"
    assert table.loc["dense", "status"] == "ok" and table.loc["dense", "variants_not_applicable"] == "fused"
    lines = [s for s in said if s.split(":")[0] in ("broken", "chain", "dense")]
    assert len(lines) == 3 and all("\n" not in s for s in lines)
    assert (run_dir / "summary.csv").is_file() and (run_dir / "bench.csv").is_file()


def test_a_missing_folder_is_one_line():
    from harness.errors import FusebenchError
    with pytest.raises(FusebenchError, match="does not exist"):
        corpus_command("/no/such/folder")


# -- the field corpus (../shared/field-models), on the host ---------------------------------

from harness import paths  # noqa: E402

FIELD_MODELS = paths.ROOT.parent / "shared" / "field-models"
FIELD_FILES = sorted(FIELD_MODELS.glob("*.tflite")) if FIELD_MODELS.is_dir() else []
# what the corpus must keep refusing, in one line naming the op
FIELD_REFUSED = {"keyword_scrambled": "op 1 is SVDF"}


@pytest.mark.slow
@pytest.mark.parametrize("path", FIELD_FILES or [None], ids=[p.stem for p in FIELD_FILES] or ["absent"])
def test_every_field_model_runs_every_variant_bit_exact_on_the_host_or_is_refused_in_one_line(path):
    """Every schedule's plan of every field model, run by the C runtime on the
    host (DSP build, as the Cortex-M7 runs it), equals the reference (LiteRT,
    or TFLite Micro where LiteRT refuses the model) on a default input; a
    variant that does not apply says so; an unsupported model is one line."""
    from harness.errors import FusebenchError
    from harness.frontend.tflite_import import load_model

    if path is None:
        pytest.skip(f"{FIELD_MODELS} is absent (the field models are not part of the repository)")
    if path.stem in FIELD_REFUSED:
        with pytest.raises(FusebenchError) as refused:
            load_model(path)
        assert FIELD_REFUSED[path.stem] in str(refused.value) and "\n" not in str(refused.value)
        return
    assert_every_variant_bit_exact_on_the_host(path)


ARCHITECTURE_FILES = sorted((paths.MODELS_DIR / "architectures").glob("*.tflite"))


@pytest.mark.slow
@pytest.mark.parametrize("path", ARCHITECTURE_FILES, ids=[p.stem for p in ARCHITECTURE_FILES])
def test_every_shipped_architecture_runs_every_variant_bit_exact_on_the_host(path):
    """EfficientNet-Lite, MobileNetV3 (squeeze-excite, hard-swish), ShuffleNetV2
    (split, concatenation, shuffle) and MobileNetV1 under every schedule."""
    assert_every_variant_bit_exact_on_the_host(path)


def assert_every_variant_bit_exact_on_the_host(path):
    from harness.backend import hostrt
    from harness.frontend.inputs import InputSpec, model_inputs
    from harness.frontend.reference import reference_outputs_with_source
    from harness.frontend.tflite_import import load_model
    from harness.schedules.registry import NotApplicable, make_plan, schedule_names
    from harness.targets.boards import load_board

    graph = load_model(path)
    x = model_inputs(InputSpec.of(graph.input)).samples[0].data
    _, (expected,) = reference_outputs_with_source(path, [x])
    board = load_board("stm32h7")
    ran = []
    for variant in schedule_names():
        try:
            plan = make_plan(graph, variant, board=board)
        except NotApplicable as e:
            assert str(e) and "\n" not in str(e)
            continue
        ours = hostrt.run_plan(graph, plan, x, kernels="dsp")
        assert np.array_equal(ours.reshape(-1), np.asarray(expected).reshape(-1)), f"{variant} differs"
        ran.append(variant)
    assert "unfused" in ran and "msf" in ran
