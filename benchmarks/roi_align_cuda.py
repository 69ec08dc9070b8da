"""Multi-level RoIAlign CUDA kernel vs torchvision's CUDA roi_align (detectron2's pooler), on a GPU.

Runs instseg_deploy/ops/csrc/multilevel_roi_align_kernel.cu (built by nvcc on first use, through
instseg_deploy.ops.roi_align_cuda) on torch CUDA tensors, and reports per FPN level the max abs
error against torchvision plus the time of one fused launch against the reference pooler.

    python benchmarks/roi_align_cuda.py [--rois 1000] [--channels 256] [--iters 50]

Exits 0 with a message where there is no CUDA device or no nvcc.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys

import torch

STRIDES = [4, 8, 16, 32]


def make_inputs(num_rois: int, channels: int, batch: int, height: int, width: int, dtype, seed: int = 0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    feats = [torch.randn(batch, channels, -(-height // s), -(-width // s), device="cuda", generator=gen).to(dtype)
             for s in STRIDES]
    sizes = torch.exp(torch.empty(num_rois, 2, device="cuda").uniform_(0.0, 6.5, generator=gen))  # 1..665 px
    centres = torch.rand(num_rois, 2, device="cuda", generator=gen) * torch.tensor([width, height], device="cuda")
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    batch_idx = torch.randint(0, batch, (num_rois, 1), device="cuda", generator=gen).float()
    return torch.cat([batch_idx, boxes], dim=1).to(dtype), feats


def cuda_time_ms(fn, iters: int) -> float:
    for _ in range(5):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def compare(dtype, output_size: int, args) -> None:
    from torchvision.ops import roi_align

    from instseg_deploy.config.types import PoolerConfig
    from instseg_deploy.modeling.poolers import assign_levels, multilevel_roi_align
    from instseg_deploy.ops.roi_align_cuda import multilevel_roi_align_cuda

    kernel = functools.partial(multilevel_roi_align_cuda, featmap_strides=STRIDES)

    rois, feats = make_inputs(args.rois, args.channels, args.batch, args.height, args.width, dtype)
    cfg = PoolerConfig(resolution=output_size, sampling_ratio=0, aligned=True)
    ours = kernel(rois, feats, output_size=output_size)
    # Reference in float32 (torchvision's CUDA kernel) on the same, possibly FP16-rounded, inputs.
    ref = multilevel_roi_align([f.float() for f in feats], rois.float(), STRIDES, cfg)
    levels = assign_levels(rois[:, 1:].float(), 2, 5, cfg.canonical_box_size, cfg.canonical_level)
    torch.cuda.synchronize()

    out = torch.empty_like(ours)
    t_ours = cuda_time_ms(lambda: kernel(rois, feats, output_size=output_size, out=out), args.iters)
    t_pooler = cuda_time_ms(lambda: multilevel_roi_align(feats, rois, STRIDES, cfg), args.iters)
    print(f"\n{str(dtype).removeprefix('torch.')} output {output_size}x{output_size}: {args.rois} RoIs, "
          f"C={args.channels}, batch {args.batch}, input {args.height}x{args.width}")
    print(f"{'level':>6} {'rois':>6} {'max abs err':>12} {'torchvision roi_align ms':>25}")
    for level, (feat, stride) in enumerate(zip(feats, STRIDES)):
        idx = torch.nonzero(levels == level).squeeze(1)
        err = (ours[idx].float() - ref[idx]).abs().max().item() if idx.numel() else 0.0
        level_rois = rois[idx]
        t_level = cuda_time_ms(lambda f=feat, r=level_rois, s=stride: roi_align(f, r, output_size, 1.0 / s, 0, True),
                               args.iters)
        print(f"{'P' + str(level + 2):>6} {idx.numel():>6} {err:>12.3e} {t_level:>25.4f}")
    print(f"fused kernel: {t_ours:.4f} ms   reference pooler (4x roi_align + indexing): {t_pooler:.4f} ms   "
          f"overall max abs err {(ours.float() - ref).abs().max().item():.3e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--iters", type=int, default=50)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("roi_align_cuda benchmark: no CUDA device available; nothing to measure.")
        return 0
    if shutil.which("nvcc") is None:
        print("roi_align_cuda benchmark: nvcc not found; cannot build the kernel.")
        return 0
    print(f"device: {torch.cuda.get_device_name()}")
    for dtype in (torch.float32, torch.float16):
        for output_size in (7, 14):
            compare(dtype, output_size, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
