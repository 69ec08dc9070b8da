"""A real Triton server (the one bundled in nvidia-pytriton) serving the fixture model: parity with
in-process ONNX Runtime, concurrent load, bad requests, a killed Python-backend process, `instseg serve`.

Servers listen on free loopback ports only, and every one is stopped by its fixture or test.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from instseg_deploy.demo_data import DEMO_DATA
from instseg_deploy.errors import ServingError
from instseg_deploy.image_io import MAX_PIXELS_ENV

pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install 'tritonclient[http,grpc]')")


def _why_no_server() -> str | None:
    from instseg_deploy.serving.triton.server import find_bundled_server, libpython_dir

    try:
        find_bundled_server(), libpython_dir()
    except ServingError as e:
        return str(e)
    return None


pytestmark = pytest.mark.skipif(_why_no_server() is not None, reason=str(_why_no_server()))

IMAGES = sorted(glob.glob(str(DEMO_DATA / "shapes_val" / "images" / "*.jpg")))
IMAGE_LIMIT = 60_000  # bytes: above every val JPEG, so a larger request can be made cheaply
PIXEL_LIMIT = 1_000_000  # the served fixture's INSTSEG_MAX_IMAGE_PIXELS: above every val image


def _settings(**kw):
    from instseg_deploy.serving.triton.server import ServerSettings, free_port

    return ServerSettings(http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), **kw)


def _repository(model: Path, out: Path, **kw) -> Path:
    from instseg_deploy.serving.triton.repository import RepositoryRequest, write_repository

    return write_repository(RepositoryRequest(model, out, max_image_bytes=IMAGE_LIMIT, **kw))


@pytest.fixture(scope="module")
def served(tmp_path_factory, exported_onnx):
    """The fixture model's ONNX export served by the bundled server (python flavour, ORT inside)."""
    from instseg_deploy.serving.triton.server import TritonServer

    root = tmp_path_factory.mktemp("triton")
    repository = _repository(exported_onnx["raw"], root / "repo", max_batch=4)
    with mock.patch.dict(os.environ, {MAX_PIXELS_ENV: str(PIXEL_LIMIT)}):  # the server's processes inherit it
        server = TritonServer(repository, _settings(), root / "cache", root / "server.log").start()
    with server:
        yield server


@pytest.fixture(scope="module")
def images():
    from instseg_deploy.image_io import read_image

    return [read_image(p)[0] for p in IMAGES[:6]]


@pytest.fixture(scope="module")
def local(exported_onnx):
    from instseg_deploy.runtime.factory import load_predictor

    return load_predictor("ort", model=exported_onnx["raw"], score_thresh=None, mask_format="rle")


def _same(a, b) -> None:
    assert len(a) == len(b) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert [m["counts"] for m in a.masks] == [m["counts"] if isinstance(m["counts"], str) else m["counts"].decode()
                                              for m in b.masks]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_detections_equal_in_process_ort(served, images, local, protocol):
    from instseg_deploy.runtime.triton.client import ServerAddress, load_triton_predictor

    url = served.http_url if protocol == "http" else served.grpc_url
    remote = load_triton_predictor(ServerAddress(url, protocol), score_thresh=None)
    remote.mask_format = "rle"
    assert remote.class_names == local.class_names == ("disc", "square", "triangle", "ring")
    # A batch: concurrent requests the server batches; each answer is the image's own (see network_shape).
    for got, image in zip(remote.predict(images), images):
        _same(got, local(image))


def test_encoded_bytes_give_the_same_detections(served, local):
    from instseg_deploy.runtime.triton.client import ServerAddress, TritonConnection, instances_from_response

    connection = TritonConnection(ServerAddress(served.http_url))
    response = connection.infer(encoded=Path(IMAGES[0]).read_bytes())
    assert response.class_names == [local.class_names[c] for c in response.classes]
    _same(instances_from_response(response, 0.0, "rle"), local(IMAGES[0]))


def test_concurrent_clients_get_the_single_client_answers(served, images):
    """16 clients x 3 requests at once: none fails, every answer equals the one-client answer."""
    from instseg_deploy.runtime.triton.client import ServerAddress, TritonConnection

    connection = TritonConnection(ServerAddress(served.http_url, timeout_s=120))
    reference = [connection.infer(image) for image in images[:4]]
    failures, differing = [], []

    def client(k: int):
        mine = TritonConnection(ServerAddress(served.http_url, timeout_s=120))
        for j in range(3):
            i = (k + j) % 4
            try:
                got = mine.infer(images[i])
            except ServingError as e:
                failures.append(str(e))
                continue
            if got.rle_counts != reference[i].rle_counts or not np.array_equal(got.boxes, reference[i].boxes):
                differing.append(i)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert failures == [] and differing == []


def _raw_infer(served, inputs):
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    client = http.InferenceServerClient(served.http_url, network_timeout=60)
    tensors = []
    for name, array, datatype in inputs:
        t = http.InferInput(name, list(array.shape), datatype)
        t.set_data_from_numpy(array, binary_data=True)
        tensors.append(t)
    try:
        client.infer("instseg", tensors)
    except InferenceServerException as e:
        return e.message()
    return None


def _big_png() -> bytes:
    """A valid PNG of more pixels than the served fixture allows, in a few KB (refused from its header)."""
    import cv2

    return cv2.imencode(".png", np.zeros((1200, 1000, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize("case, inputs, expected", [
    ("corrupt jpeg", lambda: [("IMAGE_BYTES", np.frombuffer(Path(IMAGES[0]).read_bytes()[:300] + b"\0" * 200,
                                                            np.uint8)[None], "UINT8")], "cannot decode image"),
    ("not an image", lambda: [("IMAGE_BYTES", np.frombuffer(b"hello, this is text" * 20, np.uint8)[None], "UINT8")],
     "corrupt or not an image"),
    ("wrong dtype", lambda: [("IMAGE", np.zeros((1, 8, 8, 3), np.float32), "FP32")], "IMAGE"),
    ("wrong shape", lambda: [("IMAGE", np.zeros((1, 8, 8, 4), np.uint8), "UINT8")], "IMAGE"),
    ("empty request", lambda: [], "request has 0 inputs"),  # refused by Triton itself
    ("both inputs", lambda: [("IMAGE", np.zeros((1, 8, 8, 3), np.uint8), "UINT8"),
                             ("IMAGE_BYTES", np.zeros((1, 4), np.uint8), "UINT8")], "both"),
    ("empty bytes", lambda: [("IMAGE_BYTES", np.zeros((1, 0), np.uint8), "UINT8")], "empty"),
    ("above the byte limit", lambda: [("IMAGE_BYTES", np.zeros((1, IMAGE_LIMIT + 1), np.uint8), "UINT8")],
     "above the limit"),
    ("above the pixel limit", lambda: [("IMAGE_BYTES", np.frombuffer(_big_png(), np.uint8)[None], "UINT8")],
     "too large to decode"),
])
def test_bad_requests_get_an_error_and_the_server_keeps_serving(served, images, case, inputs, expected):
    from instseg_deploy.runtime.triton.client import ServerAddress, TritonConnection

    message = _raw_infer(served, inputs())
    assert message is not None and expected in message, (case, message)
    assert len(TritonConnection(ServerAddress(served.http_url)).infer(images[0]).scores) > 0


def _stub_pids(server) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_stub_of(p, server.process.pid)]


def _is_stub_of(proc: Path, parent: int) -> bool:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent and \
            b"triton_python_backend_stub" in (proc / "cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return False


def test_killed_backend_process_fails_requests_clearly_then_recovers(tmp_path, exported_onnx, images):
    """SIGKILL the Python-backend process mid-load: every request ends (success or a clear error) within its
    timeout, and after the model is reloaded (what `instseg serve` does on its own) requests succeed again."""
    from instseg_deploy.runtime.triton.client import ServerAddress, TritonConnection
    from instseg_deploy.serving.triton.server import TritonServer

    repository = _repository(exported_onnx["raw"], tmp_path / "repo")
    with TritonServer(repository, _settings(), tmp_path / "cache", tmp_path / "server.log") as server:
        outcomes: list[tuple[str, float]] = []

        def client():
            connection = TritonConnection(ServerAddress(server.http_url, timeout_s=20))
            for _ in range(4):
                start = time.monotonic()
                try:
                    connection.infer(images[0])
                    outcomes.append(("ok", time.monotonic() - start))
                except ServingError as e:
                    outcomes.append((str(e), time.monotonic() - start))

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        (stub,) = _stub_pids(server)
        os.kill(stub, signal.SIGKILL)
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a request hung"
        errors = [o for o, _ in outcomes if o != "ok"]
        assert errors and all("not healthy" in e or "no available versions" in e for e in errors), errors
        assert max(seconds for _, seconds in outcomes) < 25
        assert server.restart_dead_models({"instseg": 1}) == ["instseg"]
        assert len(_stub_pids(server)) == 1
        assert len(TritonConnection(ServerAddress(server.http_url)).infer(images[0]).scores) > 0
        assert server.restart_dead_models({"instseg": 1}) == []  # healthy: nothing reloaded


def _serve(model, settings, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "instseg_deploy.cli.main", "serve", "--model", str(model),
                             "--http-port", str(settings.http_port), "--grpc-port", str(settings.grpc_port),
                             "--metrics-port", str(settings.metrics_port), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_cli_port_in_use_is_one_error_line(exported_onnx):
    import socket

    settings = _settings()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", settings.http_port))
        holder.listen()
        process = _serve(exported_onnx["raw"], settings)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and f"127.0.0.1:{settings.http_port}" in lines[-1]
    assert "--http-port" in lines[-1] and "Traceback" not in err


def test_serve_cli_serves_then_stops_on_sigterm_without_orphans(exported_onnx, images):
    from instseg_deploy.runtime.triton.client import ServerAddress, TritonConnection

    settings = _settings()
    process = _serve(exported_onnx["raw"], settings)
    try:
        lines = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("Ctrl-C stops it."):
                break
        assert lines and lines[0].startswith("ready: instseg"), (lines, process.poll())
        assert f"http://127.0.0.1:{settings.http_port}/v2/models/instseg" in "".join(lines)
        url = f"127.0.0.1:{settings.http_port}"
        assert len(TritonConnection(ServerAddress(url)).infer(images[0]).scores) > 0
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _descends(p, process.pid)]
        assert children, "tritonserver should run under instseg serve"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        assert process.returncode == 0, process.stderr.read()
        for _ in range(50):
            alive = [pid for pid in children if _alive(pid)]
            if not alive:
                break
            time.sleep(0.2)
        assert alive == [], "tritonserver or a stub outlived instseg serve"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _descends(proc: Path, ancestor: int) -> bool:
    pid = int(proc.name)
    for _ in range(6):
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if pid == ancestor:
            return True
        if pid <= 1:
            return False
    return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent's reaping is left


def test_repository_metadata_is_the_models(served, exported_onnx):
    from instseg_deploy.model_file.reader import read_model_metadata
    from instseg_deploy.runtime.triton.client import ServerAddress, TritonConnection

    served_meta = TritonConnection(ServerAddress(served.http_url)).metadata()
    assert served_meta == json.loads(json.dumps(read_model_metadata(exported_onnx["raw"])))


@pytest.fixture(scope="module")
def val_subset(tmp_path_factory):
    """The first 8 val images and their annotations (an eval through the server in seconds)."""
    data = json.loads((DEMO_DATA / "shapes_val" / "annotations.json").read_text())
    keep = data["images"][:8]
    ids = {im["id"] for im in keep}
    subset = {**data, "images": keep, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    path = tmp_path_factory.mktemp("val") / "annotations.json"
    path.write_text(json.dumps(subset))
    return ["--images", str(DEMO_DATA / "shapes_val" / "images"), "--annotations", str(path)]


def _cli(*args):
    from typer.testing import CliRunner

    from instseg_deploy.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_eval_through_the_server_gives_the_in_process_ap(served, exported_onnx, val_subset, tmp_path):
    metrics, detections = {}, {}
    for backend, extra in (("triton", ["--url", served.http_url]), ("ort", ["--model", str(exported_onnx["raw"])])):
        out = tmp_path / backend
        result = _cli("eval", "--backend", backend, *extra, *val_subset, "--out", str(out))
        assert result.exit_code == 0, result.output
        metrics[backend] = json.loads((out / "metrics.json").read_text())
        detections[backend] = json.loads((out / "detections.json").read_text())
    for iou_type in ("bbox", "segm"):
        assert abs(metrics["triton"][iou_type]["AP"] - metrics["ort"][iou_type]["AP"]) <= 0.05
    assert len(detections["triton"]) == len(detections["ort"]) > 0
    assert detections["triton"] == detections["ort"]  # each image predicted alone on both sides: identical


def test_predict_through_the_server(served, tmp_path):
    out = tmp_path / "pred"
    result = _cli("predict", IMAGES[0], IMAGES[1], "--backend", "triton", "--url", served.grpc_url, "--protocol",
                  "grpc", "--out", str(out))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results and all(r["score"] >= 0.5 for r in results)  # the CLI's (and API's) default threshold
    assert {Path(p).stem + ".png" for p in IMAGES[:2]} <= {p.name for p in out.iterdir()}


def test_bench_against_the_server(served, exported_onnx, tmp_path):
    report = tmp_path / "serve.json"
    result = _cli("bench", "--backend", "triton", "--url", served.http_url, "--model", str(exported_onnx["raw"]),
                  "--concurrency", "1,2", "--requests", "2", "--images", str(DEMO_DATA / "shapes_val" / "images"),
                  "--json", str(report))
    assert result.exit_code == 0, result.output
    rows = json.loads(report.read_text())["rows"]
    assert [r["label"] for r in rows] == ["in-process ort", "server", "server"]
    assert [r["concurrency"] for r in rows] == [1, 1, 2] and all(r["failed"] == 0 for r in rows)
    assert all(r["differing"] == 0 and r["p50_ms"] > 0 for r in rows)
    assert "serving overhead at 1 client" in result.output


def test_triton_backend_errors_are_one_line(exported_onnx):
    from instseg_deploy.serving.triton.server import free_port

    for args, expected in (
        (["predict", IMAGES[0], "--backend", "triton", "--out", "x"], "--url HOST:PORT"),
        (["predict", IMAGES[0], "--backend", "triton", "--url", f"127.0.0.1:{free_port()}", "--out", "x"],
         "Triton at 127.0.0.1"),
        (["eval", "--backend", "triton", "--url", "nonsense", "--images", str(DEMO_DATA / "shapes_val" / "images"),
          "--annotations", str(DEMO_DATA / "shapes_val" / "annotations.json")], "--url must be HOST:PORT"),
        (["bench", "--backend", "triton,ort", "--url", "127.0.0.1:1"], "benchmarked alone"),
        (["export", "--to", "triton", "--out", "repo"], "exported --model"),
        (["export", "--to", "triton", "--model", str(exported_onnx["raw"]), "--out", "r", "--flavour", "x"],
         "--flavour"),
    ):
        result = _cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().splitlines()[-1].startswith("error:") and expected in result.output, args


# Stands in for Triton's onnxruntime backend, which the PyPI server lacks: runs the net model's ONNX file with
# ONNX Runtime under the same config (inputs/outputs by name), so the native flavour's BLS path is exercised.
ONNX_STAND_IN = """
import numpy as np
import onnxruntime
import torch
import triton_python_backend_utils as pb_utils
from pathlib import Path


class TritonPythonModel:
    def initialize(self, args):
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {i.name: np.from_dlpack(pb_utils.get_input_tensor_by_name(request, i.name))
                     for i in self.session.get_inputs()}
            names = [o.name for o in self.session.get_outputs()]
            outputs = self.session.run(names, feeds)
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor.from_dlpack(n, torch.utils.dlpack.to_dlpack(torch.from_numpy(np.array(v))))
                for n, v in zip(names, outputs)]))
        return responses
"""


def _without_block(config: str, key: str) -> str:
    start = config.index(key + " {")
    depth, end = 0, start
    for end in range(config.index("{", start), len(config)):
        depth += {"{": 1, "}": -1}.get(config[end], 0)
        if depth == 0:
            break
    return config[:start] + config[end + 1:]


def _native_with_stand_in(model: Path, out: Path, net_line: str, stand_in: str) -> Path:
    """The native repository of ``model``, its net model run by ``stand_in`` (a Python-backend model.py) in
    place of the backend ``net_line`` names, which the PyPI server lacks."""
    repository = _repository(model, out, flavour="native")
    net = repository / "instseg_net"
    config = (net / "config.pbtxt").read_text()
    assert net_line in config
    # The bundled server segfaults running a warm-up request on a Python-backend model: the stand-in goes without.
    (net / "config.pbtxt").write_text(_without_block(config, "model_warmup").replace(net_line, 'backend: "python"'))
    (net / "1" / "model.py").write_text(stand_in)
    return repository


def _served_answers(repository: Path, tmp_path: Path, images) -> list:
    from instseg_deploy.runtime.triton.client import ServerAddress, load_triton_predictor
    from instseg_deploy.serving.triton.server import TritonServer

    with TritonServer(repository, _settings(), tmp_path / "cache", tmp_path / "server.log") as server:
        remote = load_triton_predictor(ServerAddress(server.http_url), score_thresh=None)
        remote.mask_format = "rle"
        return remote.predict(images)


def test_native_flavour_bls_path_gives_the_in_process_answers(tmp_path, exported_onnx, images, local):
    """The native repository as written, its net model run by a Python stand-in for the onnxruntime backend."""
    repository = _native_with_stand_in(exported_onnx["raw"], tmp_path / "repo", 'platform: "onnxruntime_onnx"',
                                       ONNX_STAND_IN)
    for got, image in zip(_served_answers(repository, tmp_path, images[:3]), images[:3]):
        _same(got, local(image))


# Stands in for Triton's openvino backend (not in the PyPI server) as its src/openvino.cc runs an IR: compiled
# with no precision set (only ALLOW_AUTO_BATCHING), the config's outputs read by name.
OPENVINO_STAND_IN = """
import json
import numpy as np
import openvino
import torch
import triton_python_backend_utils as pb_utils
from pathlib import Path


class TritonPythonModel:
    def initialize(self, args):
        path = Path(args["model_repository"]) / args["model_version"] / "model.xml"
        self.compiled = openvino.Core().compile_model(str(path), "CPU", {"ALLOW_AUTO_BATCHING": False})
        self.request = self.compiled.create_infer_request()
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            for name in self.inputs:
                value = np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name))
                self.request.set_tensor(name, openvino.Tensor(np.ascontiguousarray(value)))
            self.request.infer()
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor.from_dlpack(n, torch.utils.dlpack.to_dlpack(
                    torch.from_numpy(np.array(self.request.get_tensor(n).data)))) for n in self.outputs]))
        return responses
"""


def test_native_openvino_net_gives_the_answers_of_the_plugins_default_precision(tmp_path, exported_onnx, images):
    """The native repository of an IR, its net run as Triton's openvino backend runs it: the answers of
    `--backend openvino` at the precision the CPU plugin picks by default (bf16 on a BF16 CPU, its box
    geometry kept f32 by the served IR's extra outputs), not the plugin's own bf16."""
    ov = pytest.importorskip("openvino", reason="openvino is not installed")
    from instseg_deploy.export.openvino_ir import export_openvino_ir
    from instseg_deploy.runtime.factory import load_predictor
    from instseg_deploy.runtime.openvino import shared_core

    xml = export_openvino_ir(exported_onnx["raw"], tmp_path / "model.xml").xml
    repository = _native_with_stand_in(xml, tmp_path / "repo", 'backend: "openvino"', OPENVINO_STAND_IN)
    served = _served_answers(repository, tmp_path, images[:3])
    default = shared_core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    precision = {ov.Type.bf16: "bf16", ov.Type.f32: "f32"}[default]
    local = load_predictor("openvino", model=xml, precision=precision, score_thresh=None, mask_format="rle")
    for got, image in zip(served, images[:3]):
        _same(got, local(image))
