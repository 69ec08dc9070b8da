"""Running a loaded model: the Runner protocol, the one Predictor, and one module per backend.

Backend modules import their runtime (onnxruntime, tensorrt) only when used.
"""

from instseg_deploy.runtime.factory import BACKENDS, load_predictor
from instseg_deploy.runtime.predictor import Predictor

__all__ = ["BACKENDS", "Predictor", "load_predictor"]
