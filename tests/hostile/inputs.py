"""Hostile or broken images, results files, exported models and command lines, for the CLI corpus
(tests/test_hostile_corpus.py). Made at test time; nothing large is written (a "gigapixel" PNG is a
header that claims it).

Each case builds its files under a fresh folder and returns the command line to run; ``expect`` is a
fragment of the one error line.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from instseg_deploy.demo_data import DEMO_DATA

CONFIG = str(DEMO_DATA / "shapes_r50" / "config.yaml")
WEIGHTS = str(DEMO_DATA / "shapes_r50" / "model_final.pkl")
GROUND_TRUTH = DEMO_DATA / "shapes_val" / "annotations.json"
A_VAL_IMAGE = sorted((DEMO_DATA / "shapes_val" / "images").glob("*.jpg"))[0]


@dataclass(frozen=True)
class CliCase:
    name: str
    argv: Callable[[Path], list[str]]  # folder -> the command line (after `instseg`)
    expect: str  # fragment of the error line
    out: str | None = None  # a path under the folder the command must not create


def _png(width: int, height: int, body: bytes = b"\x00" * 16) -> bytes:
    """A PNG whose header claims width x height (the pixel data is a few bytes: decoding fails)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(body)) + chunk(b"IEND", b""))


def _predict(image_name: str, make: Callable[[Path], None], *extra: str) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        make(folder / image_name)
        return ["predict", str(folder / image_name), "-c", CONFIG, "-w", WEIGHTS, "--out", str(folder / "out"),
                *extra]
    return argv


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _array(shape: tuple[int, int]) -> Callable[[Path], None]:
    return lambda path: cv2.imwrite(str(path), np.full((*shape, 3), 127, np.uint8))


def image_cases() -> list[CliCase]:
    return [
        CliCase("png_claims_a_gigapixel", _predict("giga.png", _bytes(_png(40000, 30000))), "too large to decode",
                "out"),
        CliCase("png_claims_400_megapixels", _predict("big.png", _bytes(_png(20000, 20000))), "too large to decode",
                "out"),
        CliCase("png_claims_120_megapixels", _predict("mid.png", _bytes(_png(12000, 10000))), "too large to decode",
                "out"),
        CliCase("very_elongated_image", _predict("thin.png", _array((2, 6000))), "could not be read", "out"),
        CliCase("truncated_png", _predict("cut.png", _bytes(_png(64, 64)[:40])), "could not be read", "out"),
        CliCase("empty_file", _predict("empty.jpg", _bytes(b"")), "could not be read", "out"),
        CliCase("text_named_jpg", _predict("notes.jpg", _bytes(b"not an image at all\n" * 50)), "could not be read",
                "out"),
        CliCase("one_pixel_image", _predict("dot.png", _array((1, 1))), "could not be read", "out"),
        CliCase("path_with_rich_markup", lambda f: ["predict", str(f / "[/]" / "x[bold].jpg"), "-c", CONFIG, "-w",
                                                    WEIGHTS, "--out", str(f / "out")], "no such file", "out"),
        CliCase("cuda_without_a_gpu", _predict("ok.jpg", lambda p: p.write_bytes(A_VAL_IMAGE.read_bytes()),
                                               "--device", "cuda"), "cuda", "out"),
        CliCase("only_overrides_no_images", lambda f: ["predict", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.3", "-c",
                                                       CONFIG, "-w", WEIGHTS, "--out", str(f / "out")],
                "no images given", "out"),
        CliCase("unknown_override_key", _predict("ok.jpg", lambda p: p.write_bytes(A_VAL_IMAGE.read_bytes()),
                                                 "MODEL.ROI_HEADS.SCORE_THRESH", "0.3"), "SCORE_THRESH", "out"),
        CliCase("override_of_the_wrong_type", _predict("ok.jpg", lambda p: p.write_bytes(A_VAL_IMAGE.read_bytes()),
                                                       "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "high"),
                "SCORE_THRESH_TEST", "out"),
    ]


def _eval_results(results) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        path = folder / "results.json"
        path.write_text(results if isinstance(results, str) else json.dumps(results))
        return ["eval", "--predictions", str(path), "--annotations", str(GROUND_TRUTH), "--out", str(folder / "out")]
    return argv


def results_cases() -> list[CliCase]:
    box = {"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.9}
    return [
        CliCase("results_with_broken_polygons", _eval_results([{**box, "segmentation": [[1, 2, 3]]}]), "polygons",
                "out"),
        CliCase("results_with_a_bad_rle", _eval_results([{**box, "segmentation": {"counts": 5}}]), "RLE", "out"),
        CliCase("results_not_json", _eval_results("{not json"), "JSON", "out"),
        CliCase("results_not_a_list", _eval_results({"a": 1}), "list", "out"),
        CliCase("results_unknown_image", _eval_results([{**box, "image_id": 99999}]), "99999", "out"),
        CliCase("results_unknown_category", _eval_results([{**box, "category_id": 777}]), "777", "out"),
        CliCase("results_bad_bbox", _eval_results([{**box, "bbox": [1, "x", 2]}]), "bbox", "out"),
        CliCase("results_nan_score", _eval_results('[{"image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], '
                                                   '"score": NaN}]'), "score", "out"),
    ]


def _ort_model(make: Callable[[Path], None]) -> Callable[[Path], list[str]]:
    def argv(folder: Path) -> list[str]:
        make(folder / "model.onnx")
        (folder / "img.jpg").write_bytes(A_VAL_IMAGE.read_bytes())
        return ["predict", str(folder / "img.jpg"), "--backend", "ort", "--model", str(folder / "model.onnx"),
                "--out", str(folder / "out")]
    return argv


def _onnx_with_metadata(value: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph)
        helper.set_model_props(model, {"instseg": value})
        onnx.save(model, str(path))
    return make


def model_cases() -> list[CliCase]:
    return [
        CliCase("onnx_empty_file", _ort_model(_bytes(b"")), "model.onnx", "out"),
        CliCase("onnx_random_bytes", _ort_model(_bytes(np.random.default_rng(0).bytes(4096))), "model.onnx", "out"),
        CliCase("onnx_metadata_not_json", _ort_model(_onnx_with_metadata("{nope")), "metadata", "out"),
        CliCase("onnx_metadata_not_a_mapping", _ort_model(_onnx_with_metadata("[1, 2]")), "metadata", "out"),
        CliCase("onnx_metadata_missing_keys", _ort_model(_onnx_with_metadata('{"format_version": 1}')), "metadata",
                "out"),
        CliCase("onnx_metadata_wrong_types", _ort_model(_onnx_with_metadata(
            '{"format_version": 1, "class_names": 5, "preprocess": "x", "postprocess": [], "num_classes": "a"}')),
            "metadata", "out"),
    ]
