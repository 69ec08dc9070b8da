"""`instseg bench` end to end on the tiny model: structure and sanity of what it reports (no timing thresholds)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from instseg_deploy.checkpoint.writer import save_checkpoint
from instseg_deploy.cli.main import app
from instseg_deploy.config import load_config
from instseg_deploy.modeling import build_model

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, tiny_config_path):
    """An untrained tiny model as an instseg checkpoint (config inside)."""
    cfg = load_config(tiny_config_path)
    weights = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    save_checkpoint(weights, build_model(cfg.model), cfg.raw, ("disc", "square", "triangle", "ring"))
    return weights


def test_bench_torch_and_ort_rows(tmp_path, tiny_weights):
    weights = tiny_weights
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", "--backend", "torch,ort", "--weights", str(weights), "--size", "128x192",
                                 "--batch", "2", "--threads", "1", "--warmup", "1", "--iters", "2", "--rounds", "2",
                                 "--processes", "2",
                                 "--json", str(out / "b.json"), "--markdown", str(out / "b.md"),
                                 "--plot", str(out / "b.png")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "b.json").read_text())
    rows = report["rows"]
    assert [(r["label"], r["batch"], r["threads"]) for r in rows] == [("torch fp32", 2, 1), ("ort fp32", 2, 1)]
    assert report["peak_gflops_per_s"] > 0 and report["machine"]["cores"] >= 1
    assert report["input"] == "128x192 padded" and report["peak_source"].startswith("float32 sgemm")
    assert len(report["machine_gflops_by_round"]) == 2 and min(report["machine_gflops_by_round"]) > 0
    # fp32 rows only: the f32 sgemm is their peak and nothing else is measured.
    assert report["peaks_by_compute"] == {"f32": report["peaks_by_threads"]} and report["machine"]["isa"]
    for row in rows:
        for key in ("end_to_end_ms", "model_ms"):
            s = row[key]
            assert 0 < s["p50"] <= s["p90"] <= s["p99"] and s["mean"] > 0
        assert row["images_per_s"] > 0 and row["startup_s"] > 0 and row["peak_rss_mb"] > 50
        assert row["gflops_per_image"] > 0 and 0 < row["percent_of_peak"]
        assert row["peak_compute"] == "f32" and row["peak_gflops_per_s"] == report["peaks_by_threads"]["1"]
        assert row["input_hw"] == [128, 192] and row["input_hws"] == [[128, 192]]
        assert row["rounds"] == 2 and row["processes"] == 2 and len(row["round_p50_ms"]) == 2
        assert "end_to_end_s" not in row
        # Host time apart from the model's: each stage's median within the end-to-end one.
        assert row["mask_format"] == "rle"
        assert 0 < row["pre_ms"]["p50"] < row["end_to_end_ms"]["p50"]
        assert 0 < row["post_ms"]["p50"] < row["end_to_end_ms"]["p50"]
        assert row["overlapped_images_per_s"] > 0  # batch 2: throughput mode also runs overlapped
    table = (out / "b.md").read_text()
    assert table.count("\n| ") == 1 + len(rows) and "% peak" in table and "host %" in table
    assert f"CPU: {report['machine']['cpu']} ({report['machine']['isa']})" in table and "| f32 " in table
    assert (out / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_rows_continue_the_image_cycle_across_rounds_and_processes(tmp_path, tiny_weights):
    import cv2
    import numpy as np

    from instseg_deploy.bench.rows import RowSpec, measure_rows

    weights = tiny_weights
    images = []
    for i, (h, w) in enumerate([(96, 128), (128, 96), (96, 96)]):  # three padded sizes at short side 96
        images.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(images[-1], np.full((h, w, 3), 40 * i, np.uint8))
    spec = RowSpec("torch", "torch fp32", batch=1, threads=1, images=tuple(images), warmup=1, iters=1,
                   min_size=96, max_size=128, weights=str(weights))
    messages = []
    (row,) = measure_rows([spec], rounds=3, progress=messages.append, processes=2)
    # One timed iteration per round, each on the next image, also across the change of process:
    # three rounds see all three sizes.
    assert row["rounds"] == 3 and row["processes"] == 2 and len(row["round_p50_ms"]) == 3
    assert row["input_hws"] == [[96, 96], [96, 128], [128, 96]]
    assert [m.split(":")[0] for m in messages] == [
        "process 1/2", "round 1/3, row 1/1", "process 2/2", "round 2/3, row 1/1", "round 3/3, row 1/1"]


def test_a_failing_row_reports_its_error_and_leaves_no_process(tmp_path):
    import multiprocessing

    from instseg_deploy.bench.rows import RowError, RowSpec, measure_rows

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    spec = RowSpec("ort", "ort fp32", batch=1, threads=1, images=(), warmup=0, iters=1, min_size=None,
                   max_size=None, model=str(broken))
    with pytest.raises(RowError, match=r"ort fp32 \(batch 1, 1 threads\): .*not a readable ONNX model"):
        measure_rows([spec], rounds=1)
    assert not multiprocessing.active_children()


def test_a_failing_row_is_one_error_line_from_the_cli(tmp_path, tiny_weights):
    """A model the parent can read (no metadata needed: FLOPs come from --weights) but a row's process
    cannot load: the command prints one `error:` line naming the row and exits 2, no traceback."""
    import onnx
    from onnx import TensorProto, helper

    foreign = tmp_path / "foreign.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(foreign))
    result = runner.invoke(app, ["bench", "--backend", "ort", "--weights", str(tiny_weights), "--model", str(foreign),
                                 "--size", "64x96", "--threads", "1", "--warmup", "0", "--iters", "1"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1
    assert "benchmark row ort fp32 (batch 1, 1 threads)" in result.output and "no instseg metadata" in result.output


def test_model_only_latency_is_part_of_end_to_end(tiny_weights, tmp_path):
    """Every timed iteration's model-only time lies inside its end-to-end time (preprocessing and
    postprocessing are never free), so each statistic is strictly smaller; a model-only column taken
    from the end-to-end samples would be equal."""
    import cv2
    import numpy as np

    from instseg_deploy.bench.rows import RowSpec, measure_rows

    image = str(tmp_path / "image.png")
    cv2.imwrite(image, np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8))
    spec = RowSpec("torch", "torch fp32", batch=1, threads=1, images=(image,), warmup=0, iters=5, min_size=96,
                   max_size=128, weights=str(tiny_weights))
    (row,) = measure_rows([spec], rounds=1)
    for stat in ("mean", "p50", "p90", "p99"):
        assert 0 < row["model_ms"][stat] < row["end_to_end_ms"][stat], stat
    assert row["model_images_per_s"] > row["images_per_s"]


def test_bench_rejects_bad_requests(tmp_path):
    result = runner.invoke(app, ["bench", "--backend", "tensorflow"])
    assert result.exit_code != 0 and "unknown backend" in result.output
    result = runner.invoke(app, ["bench", "--backend", "torch"])
    assert result.exit_code != 0 and "needs --weights" in result.output
    result = runner.invoke(app, ["bench", "--backend", "ort", "--model", str(tmp_path / "none.onnx")])
    assert result.exit_code != 0 and "not found" in result.output
    result = runner.invoke(app, ["bench", "--backend", "torch", "--weights", str(tmp_path / "w.pth"), "--size", "8x8"])
    assert result.exit_code == 2 and "--size 8x8 is too small" in result.output
    result = runner.invoke(app, ["bench", "--backend", "torch", "--weights", str(tmp_path / "w.pth"), "--size", "800"])
    assert result.exit_code == 2 and "--size must be HxW" in result.output
    result = runner.invoke(app, ["bench", "--backend", "torch", "--weights", str(tmp_path / "w.pth"), "--batch", "1,x"])
    assert result.exit_code == 2 and "--batch takes comma-separated integers" in result.output
    result = runner.invoke(app, ["bench", "--backend", "torch", "--weights", str(tmp_path / "w.pth"),
                                 "--mask-format", "polygons"])
    assert result.exit_code == 2 and "--mask-format must be one of" in result.output


def test_bench_refuses_a_batch_larger_than_its_images(tmp_path, tiny_weights):
    """8 generated images cannot make a batch of 100000: the rows would count images they never ran."""
    result = runner.invoke(app, ["bench", "--backend", "torch", "--weights", str(tiny_weights), "--batch", "100000",
                                 "--size", "64x96"])
    assert result.exit_code == 2 and "--batch 100000 needs at least that many images" in result.output


def _results_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "run_benchmarks.py"
    spec = importlib.util.spec_from_file_location("run_benchmarks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(written: str, e2e_p50: float, model_p50: float, cpu: str = "EPYC", rounds: int = 32,
         speed: float = 100.0) -> dict:
    row = {"label": "ort fp32", "batch": 1, "threads": 2,
           "end_to_end_ms": {"p50": e2e_p50}, "model_ms": {"p50": model_p50}}
    section = {"input": "800x1344 padded", "rows": [row], "machine_gflops_by_round": [speed, 2 * speed, speed / 2]}
    return {"written": written, "machine": {"cpu": cpu, "cores": 2, "torch": "2", "onnxruntime": "1"},
            "settings": {"sizes": {"large": "800x1333", "small": "320x448"}, "warmup": 2, "iters": 1,
                         "rounds": rounds, "processes": 4},
            "large": section, "small": {"input": "320x416 padded", "rows": [], "machine_gflops_by_round": [50.0]}}


def test_results_script_compares_medians_of_two_runs():
    script = _results_script()
    before, now = _run("day 1", 1000.0, 800.0), _run("day 2", 1050.0, 700.0, speed=90.0)
    lines = script.reproducibility_lines(before, now)
    row = next(line for line in lines if line.startswith("| 800x1333"))
    assert "1000.0 | 1050.0 | +5.0%" in row and "800.0 | 700.0 | -12.5%" in row
    summary = next(line for line in lines if line.startswith("Largest change"))
    assert "**-12.5%**" in summary and "2 medians compared; 1 within 10%" in summary
    assert "800x1333 section 100 -> 90 GFLOP/s (-10.0%)" in lines[-1]
    assert script.comparable(before, now)
    assert not script.comparable(before, _run("x", 1, 1, cpu="Xeon"))
    assert not script.comparable(before, _run("x", 1, 1, rounds=5))


def test_input_label_names_every_padded_size():
    from instseg_deploy.bench.run import input_label

    rows = [{"input_hws": [[320, 416], [320, 512]]}, {"input_hws": [[384, 512]]}]
    assert input_label(rows) == "320x416 to 384x512 padded"
    assert input_label([{"input_hws": [[800, 1344]]}]) == "800x1344 padded"
