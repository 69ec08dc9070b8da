"""Training Mask R-CNN with detectron2's semantics: losses, sampling, data, solver, loop.

Nothing here changes the inference path: losses are computed from the model's own
submodules (backbone, RPN head, ROI heads), so a trained model exports as any other.
"""
