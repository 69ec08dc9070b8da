"""Inference backends. Each adds only how it runs a preprocessed batch; heavy imports stay lazy."""
