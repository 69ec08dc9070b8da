"""The C++ runtime (cpp/): builds with CMake, and its example app `instseg_predict` gives the
Python ONNX Runtime backend's detections on the fixture images; bad input fails cleanly.

Needs cmake, a C++17 compiler, libjpeg/libpng/nlohmann-json headers and ONNX Runtime's headers +
library (all installed by cpp/scripts/install_deps.sh); skips with the reason when one is missing.
INSTSEG_CPP_BUILD_DIR reuses a build folder between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from instseg_deploy.demo_data import DEMO_DATA

REPO = Path(__file__).resolve().parent.parent
CPP = REPO / "cpp"
D2 = REPO / "tests" / "data" / "detectron2"
SHAPES = sorted((DEMO_DATA / "shapes_val" / "images").glob("*.jpg"))
PHOTOS = sorted((D2 / "photos").iterdir())
# The detectron2 golden images: 12 shapes images with many overlapping instances + natural photos.
IMAGES = {"raw": SHAPES[:12] + PHOTOS, "pasted": SHAPES[:3] + PHOTOS[:3]}
MIN_MATCH_RATE = 0.995
MIN_MASK_IOU = 0.98


def _ort_root() -> Path:
    root = os.environ.get("ONNXRUNTIME_ROOT")
    return Path(root) if root else Path.home() / ".cache" / "instseg-deploy" / "onnxruntime"


def _missing_toolchain() -> list[str]:
    """What the build needs and this machine lacks (empty when everything is there)."""
    missing = []
    if shutil.which("cmake") is None:
        missing.append("cmake")
    if shutil.which("c++") is None and shutil.which("g++") is None:
        missing.append("a C++ compiler")
    for header, package in (("jpeglib.h", "libjpeg62-turbo-dev"), ("png.h", "libpng-dev"),
                            ("nlohmann/json.hpp", "nlohmann-json3-dev"), ("openssl/evp.h", "libssl-dev")):
        if not any((Path(d) / header).is_file() for d in ("/usr/include", "/usr/local/include")):
            missing.append(f"{header} ({package})")
    root = _ort_root()
    if not (root / "include" / "onnxruntime_cxx_api.h").is_file():
        missing.append(f"ONNX Runtime headers in {root}/include")
    if not list((root / "lib").glob("libonnxruntime.so*")):
        missing.append(f"libonnxruntime.so in {root}/lib")
    return missing


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory) -> Path:
    missing = _missing_toolchain()
    if missing:
        pytest.skip(f"C++ build needs {', '.join(missing)}: run cpp/scripts/install_deps.sh")
    build = Path(os.environ.get("INSTSEG_CPP_BUILD_DIR") or tmp_path_factory.mktemp("cpp_build"))
    for cmd in (["cmake", "-S", str(CPP), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DONNXRUNTIME_ROOT={_ort_root()}"],
                ["cmake", "--build", str(build), "-j", "2"]):
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return build


def _run_app(build: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(build / "instseg_predict"), *args], capture_output=True, text=True, check=False,
                          timeout=600)


def _cpp_instances(entries: list[dict], file_name: str, image_hw: tuple[int, int]):
    """The app's COCO entries of one image -> Instances (masks decoded with pycocotools)."""
    from pycocotools import mask as mask_utils

    from instseg_deploy.structures import Instances

    mine = [e for e in entries if e["file_name"] == file_name]
    boxes = np.array([e["bbox"] for e in mine], np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    masks = np.zeros((len(mine), *image_hw), bool)
    for k, e in enumerate(mine):
        assert e["segmentation"]["size"] == list(image_hw)
        masks[k] = mask_utils.decode(e["segmentation"]).astype(bool)
    return Instances(image_hw, boxes.astype(np.float32), np.array([e["score"] for e in mine], np.float32),
                     np.array([e["category_id"] - 1 for e in mine], np.int64), masks)


@pytest.fixture(scope="session")
def app_run(cpp_build, exported_onnx, tmp_path_factory):
    """app_run(flavour, mask_format) -> (results.json entries, output folder) of the app on the
    flavour's golden images with --score-thresh 0 and overlays; each run once per session."""
    runs = {}

    def run(flavour: str, mask_format: str):
        if (flavour, mask_format) not in runs:
            out = tmp_path_factory.mktemp(f"app_{flavour}_{mask_format}")
            args = ["--model", str(exported_onnx[flavour]), "--out", str(out), "--score-thresh", "0",
                    "--mask-format", mask_format]
            for path in IMAGES[flavour]:
                args += ["--image", str(path)]
            result = _run_app(cpp_build, *args)
            assert result.returncode == 0, result.stderr
            runs[flavour, mask_format] = json.loads((out / "results.json").read_text()), out
        return runs[flavour, mask_format]

    return run


def _pycocotools_rle(mask: np.ndarray) -> dict:
    """pycocotools' compressed RLE of one (H, W) mask, counts as str (what the Python side writes)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


@pytest.mark.parametrize("flavour", ["raw", "pasted"])
def test_app_matches_python_ort_backend(app_run, exported_onnx, flavour):
    """The app's --mask-format rle results (made per region, no full-image masks) are the Python
    backend's detections, and each matched detection's RLE string is pycocotools' encoding of the
    Python dense mask."""
    from instseg_deploy.evaluation.parity import mask_iou, match_detections
    from instseg_deploy.image_io import read_image
    from instseg_deploy.model_file.metadata import preprocess_params
    from instseg_deploy.runtime.ort import load_ort_runner
    from instseg_deploy.runtime.predictor import Predictor

    model = exported_onnx[flavour]
    images = IMAGES[flavour]
    entries, out = app_run(flavour, "rle")
    assert {p.stem for p in images} <= {p.stem for p in out.glob("*.png")}

    runner = load_ort_runner(model)
    predictor = Predictor(runner, preprocess_params(runner.meta), tuple(runner.meta["class_names"]), score_thresh=0.0)
    matched = total = pairs = 0
    worst_mask_iou = 1.0
    different_rles = []
    for path in images:
        image, _ = read_image(path)
        reference = predictor(image)
        candidate = _cpp_instances(entries, path.name, image.shape[:2])
        report = match_detections(reference, candidate)
        ious = [mask_iou(reference.masks[r], candidate.masks[c]) for r, c in report.pairs]
        matched += sum(iou >= MIN_MASK_IOU for iou in ious)
        total += max(len(reference), len(candidate))
        worst_mask_iou = min([worst_mask_iou, *ious])
        mine = [e for e in entries if e["file_name"] == path.name]
        for r, c in report.pairs:
            pairs += 1
            if _pycocotools_rle(reference.masks[r]) != mine[c]["segmentation"]:
                different_rles.append(f"{path.name} #{c}")
    rate = matched / total
    print(f"{flavour}: {matched}/{total} matched ({rate:.4%}), worst mask IoU {worst_mask_iou:.4f}, "
          f"{pairs - len(different_rles)}/{pairs} RLE strings identical to pycocotools'")
    assert total >= 50  # the check is about many detections, not a handful
    assert rate >= MIN_MATCH_RATE, f"{matched}/{total} matched; worst mask IoU {worst_mask_iou:.4f}"
    assert not different_rles, f"RLE strings differ from pycocotools' of the Python masks: {different_rles}"


@pytest.mark.parametrize("flavour", ["raw", "pasted"])
def test_mask_formats_agree(app_run, flavour):
    """--mask-format dense / rle / cropped give the same detections and the same segmentation
    strings (dense encodes the full-image mask, rle and cropped encode from the region alone), the
    cropped region is the box grown by one pixel with every pixel outside it off, the overlays are
    pixel-identical; none writes no segmentation."""
    import cv2
    from pycocotools import mask as mask_utils

    runs = {fmt: app_run(flavour, fmt) for fmt in ("dense", "rle", "cropped", "none")}
    entries = {fmt: run[0] for fmt, run in runs.items()}
    assert len(entries["dense"]) >= 50
    masks = ("segmentation", "mask_offset", "mask_size")
    detections = [{k: v for k, v in e.items() if k not in masks} for e in entries["dense"]]
    for fmt in ("rle", "cropped", "none"):
        assert [{k: v for k, v in e.items() if k not in masks} for e in entries[fmt]] == detections, fmt
    for e in entries["none"]:
        assert not set(masks) & set(e), e

    for dense, rle, cropped in zip(entries["dense"], entries["rle"], entries["cropped"]):
        assert "mask_offset" not in dense and "mask_offset" not in rle
        assert dense["segmentation"] == rle["segmentation"] == cropped["segmentation"]
        h, w = dense["segmentation"]["size"]
        top, left = cropped["mask_offset"]
        rh, rw = cropped["mask_size"]
        assert 0 <= top and 0 <= left and 0 < rh <= h - top and 0 < rw <= w - left, cropped
        # The box (3 decimals in the JSON) grown by one pixel and clipped: floor(x0) - 1 .. ceil(x1) + 1.
        x0, y0, bw, bh = cropped["bbox"]
        for lo, hi, start, size, limit in ((x0, x0 + bw, left, rw, w), (y0, y0 + bh, top, rh, h)):
            assert start == 0 or lo - 2 - 1e-3 < start <= lo - 1 + 1e-3, cropped
            assert start + size == limit or hi + 1 - 1e-3 <= start + size < hi + 2 + 1e-3, cropped
        mask = mask_utils.decode(dense["segmentation"])
        placed = np.zeros_like(mask)  # the cropped region put into zeros is the dense mask
        placed[top:top + rh, left:left + rw] = mask_utils.decode(cropped["segmentation"])[top:top + rh, left:left + rw]
        np.testing.assert_array_equal(placed, mask)

    drawn_masks = False
    for path in IMAGES[flavour]:
        overlays = {fmt: cv2.imread(str(run[1] / f"{path.stem}.png")) for fmt, run in runs.items()}
        for fmt in ("rle", "cropped"):
            np.testing.assert_array_equal(overlays[fmt], overlays["dense"], err_msg=f"{path.name} {fmt}")
        drawn_masks |= not np.array_equal(overlays["none"], overlays["dense"])
    assert drawn_masks  # the overlays do draw masks, and none draws none


def test_region_rle_equals_full_image_rle(cpp_build):
    """C++ unit test (instseg_check rle-selftest): on random masks and regions the region RLE equals
    the full-image RLE, strings and regions decode back, and malformed RLE is refused."""
    result = subprocess.run([str(cpp_build / "instseg_check"), "rle-selftest", "0", "20000"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0 and result.stdout.strip() == "ok 20000", result.stderr


def test_region_rle_equals_pycocotools(cpp_build, tmp_path):
    """The region RLE of random crops placed in random images is pycocotools' string of the full mask."""
    rng = np.random.default_rng(0)
    crop_file = tmp_path / "crop.raw"
    for case in range(40):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        top, left = int(rng.integers(0, h)), int(rng.integers(0, w))
        if case % 3 == 0:  # touching the bottom-right corner
            rh, rw = h - top, w - left
        else:
            rh, rw = int(rng.integers(1, h - top + 1)), int(rng.integers(1, w - left + 1))
        crop = (rng.random((rh, rw)) < [0.0, 0.3, 0.9, 1.0][case % 4]).astype(np.uint8)
        crop.tofile(crop_file)
        result = subprocess.run([str(cpp_build / "instseg_check"), "rle-region", *map(str, (h, w, top, left, rh, rw)),
                                 str(crop_file)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        full = np.zeros((h, w), np.uint8)
        full[top:top + rh, left:left + rw] = crop
        assert result.stdout.strip() == _pycocotools_rle(full)["counts"], (h, w, top, left, rh, rw)


def test_rle_strings_equal_pycocotools(cpp_build, exported_onnx, tmp_path):
    """The app's compressed RLE is pycocotools' own string for the same mask (not just decodable)."""
    from pycocotools import mask as mask_utils

    image = SHAPES[0]
    result = _run_app(cpp_build, "--model", str(exported_onnx["raw"]), "--image", str(image), "--out", str(tmp_path),
                      "--score-thresh", "0", "--no-overlay")
    assert result.returncode == 0, result.stderr
    entries = json.loads((tmp_path / "results.json").read_text())
    assert entries
    for e in entries:
        mask = mask_utils.decode(e["segmentation"])
        again = mask_utils.encode(np.asfortranarray(mask))["counts"].decode("ascii")
        assert again == e["segmentation"]["counts"]


def test_decoding_and_resize_are_bit_exact(cpp_build, tmp_path):
    """libjpeg-turbo/libpng decoding equals cv2.imdecode; the resize equals Pillow's BILINEAR."""
    import cv2
    from PIL import Image

    tool = cpp_build / "instseg_check"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (23, 37, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), base[:, :, 0])
    cv2.imwrite(str(tmp_path / "deep.png"), base.astype(np.uint16) * 257 + 77)
    cv2.imwrite(str(tmp_path / "alpha.png"), np.dstack([base, base[:, :, :1]]))
    Image.fromarray(base).convert("P", palette=Image.ADAPTIVE).save(tmp_path / "palette.png")
    Image.fromarray(base).save(tmp_path / "progressive.jpg", quality=85, progressive=True)
    for orientation in (3, 6, 8):
        im = Image.fromarray(base)
        exif = im.getexif()
        exif[0x0112] = orientation
        im.save(tmp_path / f"exif{orientation}.jpg", exif=exif, quality=95)
    files = [*SHAPES[:2], *PHOTOS, *sorted(tmp_path.glob("*.*"))]

    def run(*args) -> np.ndarray:
        out = tmp_path / "out.raw"
        result = subprocess.run([str(tool), *map(str, args), str(out)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        h, w = map(int, result.stdout.split())
        return np.fromfile(out, np.uint8).reshape(h, w, 3)

    for path in files:
        reference = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(run("decode", path), reference, err_msg=str(path))
    for path in (SHAPES[0], PHOTOS[0]):
        source = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        for h, w in ((320, 427), (427, 320), (17, 9), (700, 500), (source.shape[0], 100), (300, source.shape[1])):
            reference = np.asarray(Image.fromarray(source).resize((w, h), Image.BILINEAR))
            np.testing.assert_array_equal(run("resize", path, h, w), reference, err_msg=f"{path} -> {h}x{w}")


def test_engine_sidecar_written_by_python_is_read(cpp_build, exported_onnx, tmp_path):
    """The C++ TensorRT path reads the sidecar `instseg export --to trt` writes (no TensorRT needed)."""
    from instseg_deploy.model_file.reader import read_model_metadata
    from instseg_deploy.model_file.sidecar import DeviceInfo, build_sidecar, write_sidecar

    meta = read_model_metadata(exported_onnx["plugin"])
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not a real engine")
    write_sidecar(engine, build_sidecar(
        meta, engine_sha256="0" * 64, tensorrt_version="10.3.0.26", device=DeviceInfo("NVIDIA H100", "9.0"),
        precision="fp16", builder_flags=["FP16"], int8_mode=None, profiles={},
        plugin_library="/x/libinstseg_plugins.so", plugin_required=True, source_onnx="plugin.onnx",
        workspace_bytes=None))
    result = subprocess.run([str(cpp_build / "instseg_check"), "sidecar", str(engine)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(" ", 1) for line in result.stdout.strip().splitlines())
    assert fields == {"tensorrt_version": "10.3.0.26", "compute_capability": "9.0", "device_name": "NVIDIA H100",
                      "plugin_required": "1", "plugin_path": "/x/libinstseg_plugins.so", "engine_sha256": "0" * 64,
                      "classes": str(len(meta["class_names"])), "input_format": meta["preprocess"]["input_format"],
                      "min_size": str(meta["preprocess"]["min_size"]), "max_size": str(meta["preprocess"]["max_size"]),
                      "precision": "fp16", "roi_align": "plugin", "masks": meta["postprocess"]["masks"]}

    # Without TensorRT in the build, the app refuses the engine with the reason.
    result = _run_app(cpp_build, "--model", str(engine), "--image", str(SHAPES[0]), "--out", str(tmp_path / "o"))
    if "tensorrt" not in _run_app(cpp_build, "--version").stdout:
        _assert_clean_failure(result, "no TensorRT backend")


def test_engine_checks_match_the_python_loader(cpp_build, exported_onnx, tmp_path):
    """cpp/src/sidecar_check.cpp, which the C++ TensorRT backend runs before deserialising, refuses
    what runtime.trt.sidecar.check_sidecar refuses (TensorRT version, compute capability, the
    engine's SHA-256) with the same messages; no TensorRT needed."""
    import hashlib

    from instseg_deploy.errors import InstsegError
    from instseg_deploy.model_file.reader import read_model_metadata
    from instseg_deploy.model_file.sidecar import DeviceInfo, build_sidecar, file_sha256, write_sidecar
    from instseg_deploy.runtime.trt.sidecar import check_sidecar

    engine = tmp_path / "model.engine"
    engine.write_bytes(np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes())  # 3 blocks
    sidecar = build_sidecar(read_model_metadata(exported_onnx["raw"]), engine_sha256=file_sha256(engine),
                            tensorrt_version="10.3.0.26", device=DeviceInfo("NVIDIA L4", "8.9"), precision="fp16",
                            builder_flags=["FP16"], int8_mode=None, profiles={}, plugin_library=None,
                            plugin_required=False, source_onnx="model.onnx", workspace_bytes=None)
    write_sidecar(engine, sidecar)
    tool = str(cpp_build / "instseg_check")

    def both(trt_version: str, capability: str, name: str) -> tuple[str, str]:
        """(C++ outcome, Python outcome): "ok" plus warnings, or the error message."""
        cpp = subprocess.run([tool, "check-sidecar", str(engine), trt_version, capability, name],
                             capture_output=True, text=True, check=False)
        cpp_outcome = cpp.stdout.strip() if cpp.returncode == 0 else cpp.stderr.strip().removeprefix("error: ")
        try:
            warnings = check_sidecar(sidecar, engine, trt_version, DeviceInfo(name, capability))
            python_outcome = "\n".join(["ok"] + [f"warning: {w}" for w in warnings])
        except InstsegError as e:
            python_outcome = str(e)
        return cpp_outcome, python_outcome

    for empty in (b"", b"abc"):  # SHA-256 itself, against hashlib (an empty file and a short one)
        small = tmp_path / f"{len(empty)}.bin"
        small.write_bytes(empty)
        assert subprocess.run([tool, "sha256", str(small)], capture_output=True, text=True,
                              check=True).stdout.strip() == hashlib.sha256(empty).hexdigest()
    cpp, python = both("10.3.0", "8.9", "NVIDIA L4")
    assert cpp == python == "ok"
    cpp, python = both("10.3.0.26", "8.9", "NVIDIA RTX 4090")  # same compute capability: a warning
    assert cpp == python and cpp.startswith("ok\nwarning: ") and "NVIDIA RTX 4090" in cpp
    cpp, python = both("10.8.0", "8.9", "NVIDIA L4")
    assert cpp == python and "built with TensorRT 10.3.0.26 but this is TensorRT 10.8.0" in cpp
    cpp, python = both("10.3.0", "9.0", "NVIDIA H100")
    assert cpp == python and "compute capability 8.9 (NVIDIA L4) but this GPU is 9.0 (NVIDIA H100)" in cpp
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 1  # one flipped bit in the middle of the engine
    engine.write_bytes(bytes(data))
    cpp, python = both("10.3.0", "8.9", "NVIDIA L4")
    assert cpp == python and "is not the engine its sidecar model.engine.json describes" in cpp


def _assert_clean_failure(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)  # negative: killed by a signal
    assert "internal error" not in result.stderr and "terminate called" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_missing_model(cpp_build, tmp_path):
    result = _run_app(cpp_build, "--model", str(tmp_path / "nope.onnx"), "--image", str(SHAPES[0]),
                      "--out", str(tmp_path / "o"))
    _assert_clean_failure(result, "model file not found", "nope.onnx")


def test_model_without_metadata(cpp_build, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    plain = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), plain)
    result = _run_app(cpp_build, "--model", str(plain), "--image", str(SHAPES[0]), "--out", str(tmp_path / "o"))
    _assert_clean_failure(result, "has no instseg metadata")


def test_file_that_is_not_a_model(cpp_build, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    result = _run_app(cpp_build, "--model", str(garbage), "--image", str(SHAPES[0]), "--out", str(tmp_path / "o"))
    _assert_clean_failure(result, "ONNX Runtime cannot load")


def test_plugin_flavoured_model_is_refused(cpp_build, exported_onnx, tmp_path):
    result = _run_app(cpp_build, "--model", str(exported_onnx["plugin"]), "--image", str(SHAPES[0]),
                      "--out", str(tmp_path / "o"))
    _assert_clean_failure(result, "plugin-flavoured", "--roi-align onnx")


def test_unreadable_and_missing_images(cpp_build, exported_onnx, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    # Truncated files: cv2.imdecode (the Python side) refuses both, so the app does too.
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes((D2 / "photos" / "camera.png").read_bytes()[:500])
    truncated_jpg = tmp_path / "truncated.jpg"
    truncated_jpg.write_bytes(SHAPES[1].read_bytes()[:3000])
    out = tmp_path / "o"
    result = _run_app(cpp_build, "--model", str(exported_onnx["raw"]), "--image", str(bad), "--image",
                      str(tmp_path / "missing.jpg"), "--image", str(truncated_png), "--image", str(truncated_jpg),
                      "--image", str(SHAPES[0]), "--out", str(out), "--no-overlay")
    _assert_clean_failure(result, "cannot decode image", "bad.jpg", "image not found", "truncated.png",
                          "truncated.jpg", "4 of 5 image(s) could not be read")
    entries = json.loads((out / "results.json").read_text())  # the good image still has its results
    assert entries and {e["file_name"] for e in entries} == {SHAPES[0].name}


def test_bad_arguments(cpp_build, tmp_path):
    _assert_clean_failure(_run_app(cpp_build, "--image", str(SHAPES[0]), "--out", str(tmp_path)), "--model is required")
    _assert_clean_failure(_run_app(cpp_build, "--model", "m.onnx", "--image", "x.jpg", "--out", str(tmp_path),
                                   "--score-thresh", "abc"), "--score-thresh needs a number")
    _assert_clean_failure(_run_app(cpp_build, "--model", "m.onnx", "--image", "x.jpg", "--out", str(tmp_path),
                                   "--mask-format", "sparse"),
                          "--mask-format: unknown mask format 'sparse': choose dense, rle, cropped or none")
    usage = _run_app(cpp_build, "--help")
    assert usage.returncode == 0 and "--mask-format F" in usage.stdout and "(default rle)" in usage.stdout
    version = _run_app(cpp_build, "--version")
    assert version.returncode == 0 and "onnxruntime 1." in version.stdout
