"""Small building blocks shared by the kernel tests."""
from __future__ import annotations

import numpy as np

from harness.frontend.graph import Graph, Op, Quant, Tensor
from harness.frontend.tflite_writer import Q


def rand_int8(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def add_graph(shape, qa: Q, qb: Q, qo: Q, activation: str) -> Graph:
    """ADD of two model inputs (the importer takes single-input models only)."""
    def t(i, name, q):
        return Tensor(i, name, tuple(shape), "int8",
                      Quant(np.array([q.scale], np.float32), np.array([q.zero_point], np.int64)))
    tensors = [t(0, "a", qa), t(1, "b", qb), t(2, "out", qo)]
    return Graph("add", tensors, [Op(0, "ADD", [0, 1], [2], {"activation": activation})], [0, 1], [2])
