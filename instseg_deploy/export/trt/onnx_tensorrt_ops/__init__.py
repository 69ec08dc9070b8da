"""onnx-tensorrt's supported-operator tables as data: ``<TensorRT major>.json``, written by ``refresh.py``."""
