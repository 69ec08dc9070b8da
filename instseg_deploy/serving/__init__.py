"""Serving exported models: Triton Inference Server repositories and the bundled server."""
