"""fusebench: benchmark memory-efficient int8 CNN inference on microcontrollers."""

__version__ = "0.1.0"
