"""Tests of harness.frontend.inputs: preprocessing, input quantization, input loading.

No TensorFlow here; LiteRT (ai_edge_litert) is used, when installed, as the
reference for the QUANTIZE arithmetic."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.frontend import inputs as datasets
from tools import fashion_mnist
from harness.paths import MODELS_DIR
from harness.frontend.inputs import (CLASS_NAMES, InputSample, load_default_inputs, load_input_folder,
                              preprocess, quantize_input)
from harness.errors import FusebenchError

# Typical int8 input quantization of the shipped models ([-1, 1] inputs).
SCALE, ZERO_POINT = 0.007843138, -1


def _shipped_models() -> list[tuple[str, int]]:
    manifest = MODELS_DIR / "models.json"
    if not manifest.exists():
        return []
    return sorted((name, rec["resolution"]) for name, rec in json.loads(manifest.read_text()).items())


# ---------------------------------------------------------------- preprocess

@pytest.mark.parametrize("height,width", [(64, 64), (128, 128), (144, 144), (48, 80), (14, 14)])
def test_preprocess_shape_dtype_range(height: int, width: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    x = preprocess(images, height, width)
    assert x.shape == (5, height, width, 3) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    # Grey replicated to 3 identical channels.
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])


def test_preprocess_maps_black_and_white_to_minus_one_and_one() -> None:
    images = np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    x = preprocess(images, 64, 64)
    assert np.all(x[0] == -1.0)
    assert np.allclose(x[1], 1.0, atol=1e-6)


def test_preprocess_same_size_is_only_scaling() -> None:
    images = np.arange(28 * 28, dtype=np.int64).reshape(1, 28, 28) % 256
    x = preprocess(images.astype(np.uint8), 28, 28)
    assert np.allclose(x[0, ..., 0], images[0] / 127.5 - 1.0, atol=1e-6)


def test_bilinear_upscale_uses_half_pixel_centres() -> None:
    # 2 pixels -> 4: sample positions -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    image = np.array([[[0.0], [100.0]]], dtype=np.float32)[None]        # [1,1,2,1]
    out = datasets.resize_bilinear(image, 1, 4)[0, 0, :, 0]
    assert np.allclose(out, [0.0, 25.0, 75.0, 100.0])


def test_preprocess_keeps_colour_images_colour() -> None:
    image = np.zeros((1, 10, 10, 3), np.uint8)
    image[..., 0] = 255
    x = preprocess(image, 20, 20)
    assert np.allclose(x[..., 0], 1.0) and np.all(x[..., 1:] == -1.0)


def test_preprocess_rejects_bad_shapes() -> None:
    with pytest.raises(FusebenchError):
        preprocess(np.zeros((2, 28, 28, 2), np.uint8), 64, 64)
    with pytest.raises(FusebenchError):
        preprocess(np.zeros((28, 28), np.uint8)[None], 0, 64)


# ------------------------------------------------------------ quantize_input

def test_quantize_input_rounds_half_away_from_zero_and_clamps() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 1000.0, -1000.0], dtype=np.float32)
    q = quantize_input(x, 1.0, 0)
    assert q.dtype == np.int8
    assert q.tolist() == [1, 2, 3, -1, -2, -3, 0, 127, -128]
    assert quantize_input(np.float32([0.0, 2.0]), 0.5, -128).tolist() == [-128, -124]


def test_quantize_input_rejects_bad_scale() -> None:
    with pytest.raises(FusebenchError):
        quantize_input(np.zeros(3, np.float32), 0.0, 0)


def _quantize_model(n: int, scale: float, zero_point: int) -> bytes:
    """A one-op LiteRT model: float32[n] -QUANTIZE-> int8[n]."""
    flatbuffers = pytest.importorskip("flatbuffers")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    model = schema.ModelT()
    model.version = 3
    model.buffers = [schema.BufferT(), schema.BufferT(), schema.BufferT()]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    model.operatorCodes = [code]
    tensors = []
    for i, ttype in enumerate((schema.TensorType.FLOAT32, schema.TensorType.INT8)):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [n], ttype, i + 1, f"t{i}"
        if ttype == schema.TensorType.INT8:
            quant = schema.QuantizationParametersT()
            quant.scale, quant.zeroPoint = [scale], [zero_point]
            tensor.quantization = quant
        tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0], [1]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, [0], [1], [op]
    model.subgraphs = [subgraph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("scale,zero_point", [(SCALE, ZERO_POINT), (0.0123, 5), (1.0, -128), (0.25, 0)])
def test_quantize_input_matches_litert_quantize_kernel(scale: float, zero_point: int) -> None:
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.uniform(-1.2, 1.2, 4000),
        (np.arange(-300, 300) + 0.5) * np.float32(scale),        # ties (as near as float32 gets)
        np.arange(-300, 300) * np.float32(scale),
        [1e6, -1e6, 0.0, -0.0],
    ]).astype(np.float32)
    interpreter = interpreter_module.Interpreter(
        model_content=_quantize_model(len(x), scale, zero_point),
        experimental_op_resolver_type=interpreter_module.OpResolverType.BUILTIN_REF)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    expected = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert np.array_equal(quantize_input(x, scale, zero_point), expected)


# ------------------------------------------------------------ default inputs

def test_shipped_models_are_listed() -> None:
    names = {name for name, _ in _shipped_models()}
    for required in ("mobilenetv2_w035_128.tflite", "mobilenetv2_w035_144.tflite",
                     "mobilenetv2_w100_128.tflite", "mobilenetv2_w035_64.tflite"):
        assert required in names
        assert (MODELS_DIR / required).stat().st_size > 100_000


@pytest.mark.parametrize("resolution", sorted({r for _, r in _shipped_models()} | {64, 128, 144}))
def test_default_inputs_load_at_each_model_resolution(resolution: int) -> None:
    samples = load_default_inputs(resolution, resolution, SCALE, ZERO_POINT)
    assert len(samples) >= 10
    assert all(isinstance(s, InputSample) for s in samples)
    assert len({s.name for s in samples}) == len(samples)
    for s in samples:
        assert s.data.shape == (1, resolution, resolution, 3) and s.data.dtype == np.int8
        assert s.label is not None and 0 <= s.label < len(CLASS_NAMES)
    assert {s.label for s in samples} == set(range(len(CLASS_NAMES)))
    # Different images give different inputs.
    assert len({s.data.tobytes() for s in samples}) == len(samples)


def test_default_inputs_are_held_out_test_images() -> None:
    with np.load(MODELS_DIR / "inputs" / "fashion_mnist_test.npz") as npz:
        assert npz["images"].dtype == np.uint8 and npz["images"].shape[1:] == (28, 28)
        assert list(npz["class_names"]) == CLASS_NAMES
        indices, labels, images = npz["indices"], npz["labels"], npz["images"]
    if fashion_mnist.FASHION_MNIST_DIR.exists():
        test_images, test_labels = fashion_mnist.load_fashion_mnist("test")
        assert np.array_equal(test_images[indices], images)
        assert np.array_equal(test_labels[indices], labels)


def test_default_inputs_missing_file_is_a_fusebench_error(tmp_path: Path) -> None:
    with pytest.raises(FusebenchError, match="default inputs"):
        load_default_inputs(64, 64, SCALE, ZERO_POINT, path=tmp_path / "nope.npz")


# ------------------------------------------------------------- input folders

def test_input_folder_mixed_files_with_labels(tmp_path: Path) -> None:
    from PIL import Image
    rng = np.random.default_rng(2)
    ready = rng.integers(-128, 128, size=(1, 32, 32, 3)).astype(np.int8)
    np.save(tmp_path / "a_ready.npy", ready)
    np.save(tmp_path / "b_ready3d.npy", ready[0])
    pixels = rng.integers(0, 256, size=(28, 28), dtype=np.uint8)
    np.save(tmp_path / "c_pixels.npy", pixels)
    Image.fromarray(pixels).save(tmp_path / "d_image.png")
    np.save(tmp_path / "e_float.npy", preprocess(pixels[None], 32, 32)[0])
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "f_colour.jpg")
    (tmp_path / "labels.csv").write_text("file,label\na_ready.npy,3\nd_image.png,Bag\nf_colour,9\n")

    samples = load_input_folder(tmp_path, 32, 32, SCALE, ZERO_POINT)
    by_name = {s.name: s for s in samples}
    assert sorted(by_name) == ["a_ready", "b_ready3d", "c_pixels", "d_image", "e_float", "f_colour"]
    assert all(s.data.shape == (1, 32, 32, 3) and s.data.dtype == np.int8 for s in samples)
    assert np.array_equal(by_name["a_ready"].data, ready)
    assert np.array_equal(by_name["b_ready3d"].data, ready)
    expected = quantize_input(preprocess(pixels[None], 32, 32), SCALE, ZERO_POINT)
    # .npy pixels, PNG and preprocessed floats all go through the same path.
    for name in ("c_pixels", "d_image", "e_float"):
        assert np.array_equal(by_name[name].data, expected), name
    assert np.all(by_name["f_colour"].data == quantize_input(np.float32(-1.0), SCALE, ZERO_POINT))
    assert (by_name["a_ready"].label, by_name["d_image"].label, by_name["f_colour"].label) == (3, 8, 9)
    assert by_name["b_ready3d"].label is None


@pytest.mark.parametrize("filename,content,message", [
    ("bad_shape.npy", np.zeros((1, 16, 16, 3), np.int8), "bad_shape.npy"),
    ("bad_channels.npy", np.zeros((28, 28, 2), np.uint8), "bad_channels.npy"),
    ("bad_dtype.npy", np.zeros((28, 28), np.int32), "bad_dtype.npy"),
    ("bad_range.npy", np.full((28, 28), 3.0, np.float32), "bad_range.npy"),
    ("notes.txt", "hello", "notes.txt"),
    ("broken.png", "not a png", "broken.png"),
    ("broken.npy", "not numpy", "broken.npy"),
])
def test_input_folder_bad_files_name_the_file(tmp_path: Path, filename: str, content, message: str) -> None:
    if isinstance(content, str):
        (tmp_path / filename).write_text(content)
    else:
        np.save(tmp_path / filename, content)
    with pytest.raises(FusebenchError, match=message):
        load_input_folder(tmp_path, 32, 32, SCALE, ZERO_POINT)


def test_input_folder_bad_labels(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.uint8))
    (tmp_path / "labels.csv").write_text("x.npy,Spaceship\n")
    with pytest.raises(FusebenchError, match="Spaceship"):
        load_input_folder(tmp_path, 32, 32, SCALE, ZERO_POINT)
    (tmp_path / "labels.csv").write_text("y.npy,1\n")
    with pytest.raises(FusebenchError, match="y.npy"):
        load_input_folder(tmp_path, 32, 32, SCALE, ZERO_POINT)


def test_input_folder_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(FusebenchError, match="does not exist"):
        load_input_folder(tmp_path / "nope", 32, 32, SCALE, ZERO_POINT)
    with pytest.raises(FusebenchError, match="no .npy or image"):
        load_input_folder(tmp_path, 32, 32, SCALE, ZERO_POINT)


# ---------------------------------------------------------- Fashion-MNIST IDX

def test_idx_reader_roundtrip_and_errors(tmp_path: Path) -> None:
    import gzip
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in data.shape)
    with gzip.open(tmp_path / "ok.gz", "wb") as f:
        f.write(header + data.tobytes())
    assert np.array_equal(fashion_mnist._read_idx(tmp_path / "ok.gz"), data)
    (tmp_path / "short").write_bytes(header + data.tobytes()[:-1])
    with pytest.raises(FusebenchError, match="truncated"):
        fashion_mnist._read_idx(tmp_path / "short")
    with pytest.raises(FusebenchError, match="dataset-fashion-mnist"):
        fashion_mnist.load_fashion_mnist("train", data_dir=tmp_path)


# -- inputs of any shape (harness.frontend.inputs.InputSpec) -----------------------------------

from harness.frontend.inputs import InputSpec, model_inputs  # noqa: E402


def test_default_inputs_follow_the_model_s_image_shape_channels_and_dtype():
    grey = InputSpec((1, 49, 10, 1), "int8", 0.05, -3)
    inputs = model_inputs(grey, classes=12)
    assert len(inputs.samples) == 32 and not inputs.labels_apply          # 12 classes: not Fashion-MNIST's
    assert all(s.data.shape == (1, 49, 10, 1) and s.data.dtype == np.int8 for s in inputs.samples)
    assert "fashion-mnist" in inputs.source and "49x10x1" in inputs.source
    rgb = model_inputs(InputSpec((1, 20, 30, 3), "uint8", 1 / 127.5, 127), classes=10)
    assert rgb.labels_apply and rgb.samples[0].data.dtype == np.uint8
    # the grey images replicated: all three channels equal
    x = rgb.samples[0].data[0]
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2])
    f32 = model_inputs(InputSpec((1, 8, 8, 1), "float32"), classes=2)
    assert f32.samples[0].data.dtype == np.float32 and -1 <= f32.samples[0].data.min() <= 1


def test_non_image_inputs_get_a_seeded_set_said_so():
    spec = InputSpec((1, 640), "int8", 0.1, 0)
    a, b = model_inputs(spec, classes=640), model_inputs(spec, classes=640)
    assert "random int8, seed 0" in a.source and not a.labels_apply
    assert all(np.array_equal(x.data, y.data) for x, y in zip(a.samples, b.samples))
    assert a.samples[0].data.shape == (1, 640) and len({s.data.tobytes() for s in a.samples}) == 32


def test_one_npy_file_is_one_input_or_a_batch(tmp_path):
    spec = InputSpec((1, 8, 8, 3), "int8", 0.05, 0)
    for shape, count in (((8, 8, 3), 1), ((1, 8, 8, 3), 1), ((3, 8, 8, 3), 3)):
        np.save(tmp_path / "x.npy", np.ones(shape, np.int8))
        samples = model_inputs(spec, tmp_path / "x.npy").samples
        assert len(samples) == count and samples[0].data.shape == (1, 8, 8, 3), shape


def test_a_batch_npy_and_non_image_arrays_are_checked_in_plain_words(tmp_path):
    spec = InputSpec((1, 49, 10, 1), "int8", 0.05, 0)
    np.save(tmp_path / "batch.npy", np.zeros((5, 49, 10, 1), np.int8))
    inputs = model_inputs(spec, tmp_path / "batch.npy")
    assert [s.name for s in inputs.samples][:2] == ["batch[0]", "batch[1]"] and len(inputs.samples) == 5
    np.save(tmp_path / "wrong.npy", np.zeros((2, 28, 28, 3), np.int8))
    with pytest.raises(FusebenchError) as err:
        model_inputs(spec, tmp_path / "wrong.npy")
    message = str(err.value)
    assert "holds 28x28x3 values (int8)" in message and "an image of 49x10 pixels with 1 channel" in message
    assert "np." not in message and "\n" not in message
    vector = InputSpec((1, 1960), "int8", 0.1, 3)
    folder = tmp_path / "audio"
    folder.mkdir()
    np.save(folder / "a.npy", np.linspace(-1, 1, 1960).astype(np.float32))     # floats: quantized
    np.save(folder / "b.npy", np.zeros((1, 1960), np.int8))                       # as it is
    got = model_inputs(vector, folder).samples
    assert [s.data.shape for s in got] == [(1, 1960), (1, 1960)] and got[0].data.dtype == np.int8
    np.save(folder / "c.npy", np.zeros((40, 49), np.int8))
    with pytest.raises(FusebenchError, match=r"holds 40x49 values \(int8\), but the model takes a tensor of shape \[1, 1960\]"):
        model_inputs(vector, folder)


def test_colour_images_become_one_channel_for_a_grey_model(tmp_path):
    from PIL import Image
    Image.fromarray(np.full((12, 16, 3), (255, 0, 0), np.uint8)).save(tmp_path / "red.png")
    spec = InputSpec((1, 6, 8, 1), "int8", 1 / 128, 0)
    (sample,) = model_inputs(spec, tmp_path).samples
    assert sample.data.shape == (1, 6, 8, 1)
    expected = quantize_input(np.float32(0.299 * 255 / 127.5 - 1.0), 1 / 128, 0)
    assert np.all(sample.data == expected)


def test_a_channels_first_input_gets_the_same_images_transposed(tmp_path):
    # PyTorch exports take [1, C, H, W] and TRANSPOSE it first
    nchw = InputSpec((1, 3, 20, 24), "int8", 1 / 127.5, -1)
    nhwc = InputSpec((1, 20, 24, 3), "int8", 1 / 127.5, -1)
    assert nchw.layout == "NCHW" and nchw.hwc == (20, 24, 3) and "channels first" in nchw.describe()
    first, last = model_inputs(nchw, classes=10), model_inputs(nhwc, classes=10)
    assert first.labels_apply and "channels first" in first.source
    for a, b in zip(first.samples, last.samples):
        assert a.data.shape == (1, 3, 20, 24) and np.array_equal(a.data, b.data.transpose(0, 3, 1, 2))
    from PIL import Image
    Image.fromarray(np.full((10, 12, 3), (255, 0, 0), np.uint8)).save(tmp_path / "red.png")
    np.save(tmp_path / "as_tensor.npy", np.ones((3, 20, 24), np.int8))      # the tensor's own layout
    tensor, red = model_inputs(nchw, tmp_path).samples           # sorted by name
    assert red.data.shape == (1, 3, 20, 24) and red.data[0, 0].min() > red.data[0, 1].max()
    assert np.array_equal(tensor.data, np.ones((1, 3, 20, 24), np.int8))
    np.save(tmp_path / "as_tensor.npy", np.ones((20, 24, 3), np.int8))
    with pytest.raises(FusebenchError, match=r"give int8 arrays of 3x20x24"):
        model_inputs(nchw, tmp_path)
    # a map whose last dimension is not a channel count and whose second is not either: no image
    assert InputSpec((1, 8, 8, 16), "int8", 0.1, 0).layout is None
