"""Export to ONNX (and later TensorRT), with self-describing metadata."""
