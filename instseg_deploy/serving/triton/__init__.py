"""Triton Inference Server: model repositories (config.pbtxt, the Python-backend model) and the bundled server."""
