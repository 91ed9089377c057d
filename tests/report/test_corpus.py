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
