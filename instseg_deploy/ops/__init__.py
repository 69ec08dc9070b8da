"""Custom ops of the deployment path: the multi-level RoIAlign CPU twin and its ONNX Runtime binding."""

from instseg_deploy.ops.roi_align_twin import multilevel_roi_align

__all__ = ["multilevel_roi_align"]
