"""``--backend triton``: a :class:`Predictor` whose model is a running Triton server (``instseg serve``,
or production Triton serving a repository from ``instseg export --to triton``).

The server does the pre/post-processing (it runs this project's own predictor), so the stages
here are: send each image (raw BGR pixels: exact, no re-encoding), read each response's boxes,
scores, classes and RLE masks into :class:`Instances`. A batch of images is sent as concurrent
requests (one image each; the server's dynamic batcher joins them). Every call has a timeout:
a dead or hung server is an error, never a hang.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from instseg_deploy.errors import ServingError
from instseg_deploy.processing.masks import as_format
from instseg_deploy.runtime.predictor import Predictor, checked_score_thresh
from instseg_deploy.runtime.triton.contract import (
    DATATYPES,
    IMAGE,
    IMAGE_BYTES,
    METADATA_PARAMETER,
    OUTPUTS,
    Response,
)
from instseg_deploy.structures import Instances

PROTOCOLS = ("http", "grpc")
CLIENT_HINT = "pip install 'tritonclient[http,grpc]'"


@dataclass(frozen=True)
class ServerAddress:
    url: str  # HOST:PORT (HTTP or gRPC port, matching protocol)
    protocol: str = "http"
    model_name: str = "instseg"
    timeout_s: float = 60.0


def _client_module(protocol: str):
    if protocol not in PROTOCOLS:
        raise ServingError(f"--protocol must be http or grpc, got {protocol!r}")
    try:
        if protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
    except ImportError as e:
        raise ServingError(f"--backend triton needs tritonclient ({CLIENT_HINT}): {e}") from None
    return module


def _clean_url(url: str) -> str:
    url = url.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if url.startswith(scheme):
            url = url[len(scheme):]
    if not url or ":" not in url.rsplit("]", 1)[-1]:
        raise ServingError(f"--url must be HOST:PORT, got {url!r}")
    return url.rstrip("/")


class TritonConnection:
    """Requests to one served model; one client per calling thread (tritonclient's are not thread-safe)."""

    def __init__(self, address: ServerAddress):
        self.address = ServerAddress(_clean_url(address.url), address.protocol, address.model_name, address.timeout_s)
        self.module = _client_module(address.protocol)
        self._local = threading.local()

    def client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            a = self.address
            if a.protocol == "http":
                client = self.module.InferenceServerClient(a.url, connection_timeout=a.timeout_s,
                                                           network_timeout=a.timeout_s)
            else:
                client = self.module.InferenceServerClient(a.url)
            self._local.client = client
        return client

    def _call(self, what: str, fn):
        from tritonclient.utils import InferenceServerException

        try:
            return fn()
        except InferenceServerException as e:
            raise ServingError(f"Triton at {self.address.url} ({self.address.protocol}), model "
                               f"{self.address.model_name!r}: {what}: {e.message() or e}") from None
        except (OSError, TimeoutError) as e:  # refused, reset, timed out
            raise ServingError(f"Triton at {self.address.url} ({self.address.protocol}): {what}: "
                               f"{type(e).__name__}: {e}") from None

    def metadata(self) -> dict:
        """The served model's instseg metadata (class names, thresholds), from its config's parameters."""
        import json

        a = self.address
        if not self._call("is the server live", lambda: self.client().is_server_live()):
            raise ServingError(f"Triton at {a.url} is not live")
        if a.protocol == "http":
            config = self._call("reading the model config", lambda: self.client().get_model_config(a.model_name))
            parameters = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        else:
            config = self._call("reading the model config",
                                lambda: self.client().get_model_config(a.model_name, client_timeout=a.timeout_s))
            parameters = {k: v.string_value for k, v in config.config.parameters.items()}
        if METADATA_PARAMETER not in parameters:
            raise ServingError(f"model {a.model_name!r} at {a.url} is not an instseg model (its config has no "
                               f"{METADATA_PARAMETER} parameter; serve a repository from `instseg export --to triton`)")
        return json.loads(parameters[METADATA_PARAMETER])

    def infer(self, image: np.ndarray | None = None, encoded: bytes | None = None) -> Response:
        """One request: raw (H, W, 3) uint8 BGR pixels, or an encoded image file's bytes."""
        m, a = self.module, self.address
        name, array = (IMAGE, image[None]) if image is not None else \
            (IMAGE_BYTES, np.frombuffer(encoded, np.uint8).reshape(1, -1))
        tensor = m.InferInput(name, list(array.shape), DATATYPES[name])
        if a.protocol == "http":
            tensor.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            outputs = [m.InferRequestedOutput(o, binary_data=True) for o in OUTPUTS]
            result = self._call("inference", lambda: self.client().infer(a.model_name, [tensor], outputs=outputs,
                                                                         timeout=int(a.timeout_s * 1e6)))
        else:
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            outputs = [m.InferRequestedOutput(o) for o in OUTPUTS]
            result = self._call("inference", lambda: self.client().infer(a.model_name, [tensor], outputs=outputs,
                                                                         client_timeout=a.timeout_s))
        return Response.from_tensors({o: result.as_numpy(o) for o in OUTPUTS})


class TritonRunner:
    """Runs a "batch" (a list of BGR images) as concurrent requests to the server."""

    name = "triton"
    max_batch = None
    pad_to = None

    def __init__(self, connection: TritonConnection, meta: dict, concurrency: int = 8):
        self.connection, self.meta = connection, meta
        self.pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="triton-client")

    def run(self, images: list[np.ndarray]) -> list[Response]:
        if len(images) == 1:
            return [self.connection.infer(images[0])]
        return list(self.pool.map(self.connection.infer, images))


def instances_from_response(response: Response, score_thresh: float, mask_format: str) -> Instances:
    """A response as :class:`Instances` holding ``mask_format`` masks (converted from its RLEs)."""
    height, width = response.image_size
    rles = [{"size": [height, width], "counts": c} for c in response.rle_counts]
    instances = Instances((height, width), response.boxes, response.scores, response.classes, rles,
                          mask_format="rle")
    keep = instances.scores >= score_thresh
    if not keep.all():
        instances = instances.select(keep)
    instances.masks, instances.mask_format = as_format(instances, mask_format), mask_format
    return instances


class TritonPredictor(Predictor):
    """A :class:`Predictor` whose runner is a Triton server; same API and results type."""

    runner: TritonRunner

    def preprocess_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        return [image if self.channel_order == "BGR" else np.ascontiguousarray(image[:, :, ::-1]) for image in images]

    def postprocess_batch(self, batch: list[np.ndarray], raw: list[Response]) -> list[Instances]:
        return [instances_from_response(r, self.score_thresh, self.mask_format) for r in raw]


def load_triton_predictor(address: ServerAddress, score_thresh: float | None, concurrency: int = 8) -> TritonPredictor:
    from instseg_deploy.model_file.metadata import preprocess_params
    connection = TritonConnection(address)
    meta = connection.metadata()
    score_thresh = checked_score_thresh(meta, score_thresh, f"the model served at {connection.address.url}")
    return TritonPredictor(TritonRunner(connection, meta, concurrency), preprocess_params(meta),
                           tuple(meta["class_names"]), score_thresh=score_thresh or 0.0)
