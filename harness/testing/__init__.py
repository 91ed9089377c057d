"""Test support: building single-op int8 models (tflite_builder) and running
them through LiteRT's reference kernels and through the C runtime."""
