"""The OpenVINO IR that the native flavour's net model serves, written for the precision Triton runs it in.

Triton's OpenVINO backend compiles the IR with the CPU plugin's default inference precision, which is
bf16 on CPUs with AVX512-BF16 or AMX and f32 elsewhere; its only precision parameter, HINT_BF16, accepts
YES and nothing else, so no config.pbtxt can ask for f32. Left alone, the plugin also rounds the
poolers' box geometry to bf16 (runtime.openvino_bf16). The served IR therefore carries the extra outputs
that keep that geometry in f32: on a BF16 CPU the net runs what `--backend openvino --precision bf16`
runs; elsewhere it runs f32 and nothing reads the extra outputs. An INT8 IR's float layers get the
same bf16 (the runner of `--backend openvino` keeps them f32). For f32 on a BF16 CPU, serve the python
flavour, whose runner sets the precision itself.
"""

from __future__ import annotations

from pathlib import Path

from instseg_deploy.model_file.reader import ModelFile
from instseg_deploy.runtime.openvino import read_openvino_model, shared_core, write_openvino_model
from instseg_deploy.runtime.openvino_bf16 import keep_roi_geometry_f32
from instseg_deploy.serving.triton.model_config import NET_FORMATS


def write_served_ir(model: ModelFile, folder: Path) -> str:
    """Write ``model`` (an IR) into ``folder`` as model.xml + model.bin with the geometry outputs added;
    the .xml's name. The instseg metadata in the IR's rt_info travels with it."""
    ir = read_openvino_model(shared_core(), model.path)
    keep_roi_geometry_f32(ir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / NET_FORMATS["openvino"].files[0]
    write_openvino_model(ir, target)  # into the repository's staging folder, moved only when complete
    return target.name
