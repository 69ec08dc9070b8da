"""Post-training INT8 (QDQ) quantization and FP16 conversion of exported ONNX models."""
