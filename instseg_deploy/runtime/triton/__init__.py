"""Triton Inference Server as a backend: the served model's tensor contract and the client predictor."""
