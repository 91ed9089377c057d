"""The host reference: LiteRT's reference kernels (BUILTIN_REF).

Every firmware output is compared byte for byte with what this returns. The
default LiteRT path (optimized kernels, XNNPACK) may round differently, so it
is never used here.

Some valid models LiteRT refuses to load although TensorFlow Lite Micro runs
them (person_detect's depthwise biases carry quantized_dimension 3). For
those, `reference_outputs_with_source` falls back to TFLite Micro's own
interpreter (the `tflite-micro` package: TFLM's reference kernels) and says
which reference it used (LITERT or TFLM).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness.errors import FusebenchError
from harness.paths import ROOT


def _interpreter(model: str | Path | bytes, preserve_all_tensors: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    kwargs = dict(experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                  experimental_preserve_all_tensors=preserve_all_tensors, num_threads=1)
    try:
        if isinstance(model, (bytes, bytearray)):
            interp = Interpreter(model_content=bytes(model), **kwargs)
        else:
            interp = Interpreter(model_path=str(model), **kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise FusebenchError(f"LiteRT cannot load {model if not isinstance(model, bytes) else 'model'}: "
                             f"{str(exc).splitlines()[0]}") from None
    return interp


def _set_input(interp, x: np.ndarray) -> None:
    detail = interp.get_input_details()[0]
    x = np.asarray(x)
    if x.dtype != detail["dtype"]:
        raise FusebenchError(f"input has dtype {x.dtype}, the model expects {np.dtype(detail['dtype'])}")
    if x.size != int(np.prod(detail["shape"])):
        raise FusebenchError(f"input has shape {list(x.shape)}, the model expects {list(detail['shape'])}")
    interp.set_tensor(detail["index"], x.reshape(detail["shape"]))


def reference_output(model: str | Path | bytes, x: np.ndarray) -> np.ndarray:
    """The model's exact int8 output for input `x` (flattened)."""
    interp = _interpreter(model)
    _set_input(interp, x)
    interp.invoke()
    return _joined_outputs(interp)


def reference_output_of_inputs(model: str | Path | bytes, inputs: list[np.ndarray]) -> np.ndarray:
    """The output (in its own shape) of a model with several inputs, given in
    the model's input order (e.g. the two operands of an ADD)."""
    interp = _interpreter(model)
    for detail, x in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], np.asarray(x).reshape(detail["shape"]))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()


def reference_outputs(model: str | Path | bytes, xs: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs for several inputs with one interpreter (LiteRT's reference kernels)."""
    return _litert_outputs(_interpreter(model), xs)


def _joined_outputs(interp) -> np.ndarray:
    """Every output flattened and joined in the subgraph's output order (the
    layout the device sends; harness.frontend.graph.Graph.split_outputs)."""
    parts = [interp.get_tensor(d["index"]).reshape(-1) for d in interp.get_output_details()]
    return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()


def _litert_outputs(interp, xs: list[np.ndarray]) -> list[np.ndarray]:
    results = []
    for x in xs:
        _set_input(interp, x)
        interp.invoke()
        results.append(_joined_outputs(interp))
    return results


LITERT = "litert-ref"        # LiteRT, OpResolverType.BUILTIN_REF
TFLM = "tflite-micro"         # TFLite Micro's interpreter (its reference kernels)


def _tflm_interpreter(model: str | Path | bytes):
    from tflite_micro.python.tflite_micro import runtime
    data = bytes(model) if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=_tflm_arena(len(data)))
    except (RuntimeError, ValueError) as exc:
        raise FusebenchError(f"TFLite Micro cannot load the model either: {str(exc).splitlines()[0]}") from None
    # TFLite Micro's Python interpreter does not say how many outputs there are:
    # the flatbuffer does.
    import tflite
    interp.fusebench_outputs = tflite.Model.GetRootAsModel(data, 0).Subgraphs(0).OutputsLength()
    return interp


def _tflm_outputs(interp, xs: list[np.ndarray]) -> list[np.ndarray]:
    detail = interp.get_input_details(0)
    results = []
    for x in xs:
        x = np.asarray(x)
        if x.dtype != detail["dtype"] or x.size != int(np.prod(detail["shape"])):
            raise FusebenchError(f"input {x.dtype} {list(x.shape)} does not fit the model's "
                                 f"{np.dtype(detail['dtype'])} {list(detail['shape'])}")
        interp.set_input(x.reshape(detail["shape"]), 0)
        interp.invoke()
        parts = [np.asarray(interp.get_output(i)).reshape(-1) for i in range(interp.fusebench_outputs)]
        results.append(np.concatenate(parts) if len(parts) > 1 else parts[0].copy())
    return results


def _tflm_arena(model_bytes: int) -> int:
    return max(4 * 1024 * 1024, 12 * model_bytes)


def reference_outputs_with_source(model: str | Path | bytes, xs: list[np.ndarray]) -> tuple[str, list[np.ndarray]]:
    """The outputs for `xs` and which reference computed them: LiteRT's
    reference kernels, or TFLite Micro's interpreter for a model LiteRT
    refuses to load (input mismatches are errors either way).

    Each interpreter runs in a child process: both abort their whole process
    on some models (degenerate quantization, e.g. an untrained network's
    collapsed softmax), and that must cost the model its rows, not end the
    sweep."""
    with tempfile.TemporaryDirectory(prefix="fusebench-reference-") as tmp:
        tmp = Path(tmp)
        if isinstance(model, (bytes, bytearray)):
            path = tmp / "model.tflite"
            path.write_bytes(bytes(model))
        else:
            path = Path(model)
        np.savez(tmp / "inputs.npz", *[np.asarray(x) for x in xs])
        refusals = []
        for engine, name in ((LITERT, "LiteRT"), (TFLM, "TFLite Micro")):
            cmd = [sys.executable, "-m", "harness.frontend.reference", engine, str(path), str(tmp / "inputs.npz"),
                   str(tmp / "outputs.npz")]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            said = (done.stderr.strip().splitlines() or [""])[-1]
            if done.returncode == 0:
                with np.load(tmp / "outputs.npz") as npz:
                    return engine, [npz[f"arr_{i}"] for i in range(len(xs))]
            if done.returncode == _BAD_INPUT:
                raise FusebenchError(said)
            refusals.append(said if done.returncode == _REFUSED else
                            f"{name} crashed loading the model (exit {done.returncode})")
    raise FusebenchError("; ".join(refusals))


_REFUSED, _BAD_INPUT = 3, 4          # the child's exit codes


def _child(engine: str, model: str, inputs: str, outputs: str) -> int:
    """`python -m harness.frontend.reference ENGINE MODEL INPUTS.npz OUTPUTS.npz`."""
    with np.load(inputs) as npz:
        xs = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    try:
        interp = _interpreter(model) if engine == LITERT else _tflm_interpreter(model)
    except FusebenchError as exc:
        print(exc, file=sys.stderr)
        return _REFUSED
    try:
        results = (_litert_outputs if engine == LITERT else _tflm_outputs)(interp, xs)
    except FusebenchError as exc:
        print(exc, file=sys.stderr)
        return _BAD_INPUT
    np.savez(outputs, *results)
    return 0


def reference_intermediates(model: str | Path | bytes, x: np.ndarray) -> dict[int, np.ndarray]:
    """Every tensor after one inference, by tensor index (the same indices as the
    graph IR), so a mismatch can be traced to the first layer where it appears."""
    interp = _interpreter(model, preserve_all_tensors=True)
    _set_input(interp, x)
    interp.invoke()
    tensors = {}
    for detail in interp.get_tensor_details():
        try:
            tensors[detail["index"]] = interp.get_tensor(detail["index"]).copy()
        except ValueError:      # tensors without data (e.g. optional inputs)
            continue
    return tensors


def first_mismatch(graph, model: str | Path | bytes, x: np.ndarray,
                   ours: dict[int, np.ndarray]) -> str | None:
    """Name the first op (in execution order) whose output differs from the
    reference, given our own intermediate tensors by index; None if all agree."""
    ref = reference_intermediates(model, x)
    for op in graph.ops:
        t = op.outputs[0]
        if t in ours and t in ref and not np.array_equal(ours[t].reshape(-1), ref[t].reshape(-1)):
            diff = np.abs(ours[t].reshape(-1).astype(int) - ref[t].reshape(-1).astype(int))
            return (f"op {op.index} {op.kind} (tensor '{graph.tensors[t].name}'): "
                    f"{int((diff > 0).sum())} of {diff.size} values differ, max by {int(diff.max())}")
    return None


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:5]))
