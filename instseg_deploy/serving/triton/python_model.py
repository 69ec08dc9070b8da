"""The Python-backend model of a served instseg model (both repository flavours; Triton imports it
from the repository's ``model.py``).

Each ``execute`` gets the requests Triton's dynamic batcher gathered; their images are predicted
as one batch by the project's own :class:`Predictor` (the same pre/post-processing as every
backend), and each request gets its own response or its own error: a bad image fails only its
request. The network runs in this process (``python`` flavour: ONNX Runtime, OpenVINO or
TensorRT) or in the Triton-native model ``net_model`` called through BLS (``native`` flavour).

Tensors cross the stub as DLPack (see runtime.triton.contract for why not numpy).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

# Only Triton's Python-backend stub has this module; nothing else imports python_model.
import triton_python_backend_utils as pb_utils  # noqa: I001

from instseg_deploy.errors import InstsegError
from instseg_deploy.processing.batching import fill_batch
from instseg_deploy.runtime.runner import RawDetections, fixed_input_shape
from instseg_deploy.runtime.triton.contract import IMAGE, IMAGE_BYTES, MAX_IMAGE_BYTES, METADATA_PARAMETER, OUTPUTS
from instseg_deploy.serving.triton.model_config import NET_MODEL_PARAMETER
from instseg_deploy.serving.triton.requests import image_from_inputs, network_shape, response_from_instances

log = logging.getLogger(__name__)


def _to_triton(name: str, array: np.ndarray):
    # torch's DLPack capsules are released cleanly by the stub (numpy 2's log a destructor error there)
    import torch

    capsule = torch.utils.dlpack.to_dlpack(torch.from_numpy(np.require(array, requirements=["C", "W"])))
    return pb_utils.Tensor.from_dlpack(name, capsule)


def _from_triton(tensor) -> np.ndarray:
    return np.from_dlpack(tensor)


class BlsRunner:
    """Runs the network in the Triton-native model ``net_model`` (a Runner, see runtime.runner)."""

    name = "triton-bls"

    def __init__(self, net_model: str, meta: dict[str, Any]):
        self.net_model, self.meta = net_model, meta
        self.input_names, self.output_names = list(meta["inputs"]), list(meta["outputs"])
        self.max_batch, self.pad_to = fixed_input_shape(meta)

    def run(self, batch) -> RawDetections:
        feeds, n = fill_batch(batch, self.meta["preprocess"]["pixel_mean"], self.input_names,
                              batch_size=self.max_batch or 0)
        request = pb_utils.InferenceRequest(model_name=self.net_model, requested_output_names=self.output_names,
                                            inputs=[_to_triton(k, v) for k, v in feeds.items()])
        response = request.exec()
        if response.has_error():
            raise InstsegError(f"the network model {self.net_model} failed: {response.error().message()}")
        outputs = {name: _from_triton(pb_utils.get_output_tensor_by_name(response, name))
                   for name in self.output_names}
        return RawDetections.from_graph_outputs(outputs, n)


def served_predictor(parameters: dict[str, str], version_dir: Path):
    """The predictor a repository's parameters describe (see serving.triton.repository)."""
    from instseg_deploy.runtime.factory import exported_model_predictor, load_predictor

    meta = json.loads(parameters[METADATA_PARAMETER])
    if parameters.get(NET_MODEL_PARAMETER):
        runner = BlsRunner(parameters[NET_MODEL_PARAMETER], meta)
        predictor = exported_model_predictor(runner, parameters[NET_MODEL_PARAMETER], None)
    else:
        predictor = load_predictor(parameters["backend"], model=version_dir / parameters["model_file"],
                                   score_thresh=None, threads=int(parameters.get("threads", "0")),
                                   precision=parameters.get("precision", "auto"))
    predictor.mask_format = "cropped"  # pasted once per box region, then RLE-encoded (never dense)
    return predictor


class TritonPythonModel:
    """Triton's Python-backend entry points."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.predictor = served_predictor(parameters, version_dir)
        self.max_image_bytes = int(parameters.get("max_image_bytes", MAX_IMAGE_BYTES))

    def execute(self, requests: list) -> list:
        images: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        groups: dict[tuple[int, int], list[int]] = {}  # requests batched together: same network shape
        for i, request in enumerate(requests):
            try:
                image_bytes, image = (pb_utils.get_input_tensor_by_name(request, name) for name in (IMAGE_BYTES, IMAGE))
                images[i] = image_from_inputs(None if image_bytes is None else _from_triton(image_bytes),
                                              None if image is None else _from_triton(image), self.max_image_bytes)
                groups.setdefault(network_shape(images[i], self.predictor.params), []).append(i)
            except InstsegError as e:  # this request alone fails
                errors[i] = str(e)
        results = {}
        try:
            for indices in groups.values():
                results.update(zip(indices, self.predictor.predict([images[i] for i in indices])))
        except Exception as e:  # the model failed on this batch: every request of it says so, serving goes on
            log.exception("prediction failed")
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(f"prediction failed: {e}"))
                    for _ in requests]
        responses = []
        for i in range(len(requests)):
            if i in errors:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i])))
                continue
            tensors = response_from_instances(results[i], self.predictor.class_names).tensors()
            responses.append(pb_utils.InferenceResponse([_to_triton(name, tensors[name]) for name in OUTPUTS]))
        return responses
