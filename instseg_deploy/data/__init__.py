"""Datasets we make ourselves: a generated COCO-format shapes set for demos, tests, benchmarks."""
