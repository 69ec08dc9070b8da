"""The multi-level RoIAlign builds against torchvision + detectron2's pooler: the CPU twin (the kernel's
math built by g++) everywhere, the CUDA kernel itself (built by nvcc) where there is a GPU."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from roi_align_reference import STRIDES, make_features, make_rois, reference_pool

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed to build the CPU twin")

NO_CUDA = ("no CUDA GPU visible to torch" if not torch.cuda.is_available()
           else "nvcc not found: the CUDA kernel cannot be built" if shutil.which("nvcc") is None else None)

FP32_TOL = 1e-5
FP16_TOL = 1e-2
H, W = 200, 248  # padded network input; P2..P5 are 50x62, 25x31, 13x16, 7x8


def cuda_kernel(rois, feats, strides, **attrs):
    """The CUDA kernel behind the CPU twin's NumPy interface."""
    from instseg_deploy.ops.roi_align_cuda import multilevel_roi_align_cuda

    out = multilevel_roi_align_cuda(torch.from_numpy(rois).cuda(), [torch.from_numpy(f).cuda() for f in feats],
                                    strides, **attrs)
    return out.cpu().numpy()


cuda_kernel.device = "cuda"


CUDA_PARAM = pytest.param("cuda", marks=pytest.mark.skipif(NO_CUDA is not None, reason=str(NO_CUDA)))


@pytest.fixture(params=["cpu", CUDA_PARAM])
def pool(request):
    if request.param == "cuda":
        return cuda_kernel
    from instseg_deploy.ops import multilevel_roi_align

    return multilevel_roi_align


def assert_matches(pool, rois, feats, tol, **attrs):
    # Each build against torchvision on its own device: the CUDA kernel replaces torchvision's CUDA
    # op in GPU deployments (see roi_align_reference for why the CPU result is not its reference).
    out = pool(rois, feats, STRIDES, **attrs)
    ref = reference_pool(rois, feats, device=getattr(pool, "device", "cpu"), **attrs)
    assert out.shape == ref.shape and out.dtype == rois.dtype
    err = float(np.max(np.abs(out.astype(np.float32) - ref))) if ref.size else 0.0
    assert err <= tol, f"max abs error {err}"
    return out


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("output_size,sampling_ratio,aligned", [
    (7, 0, True), (14, 0, True), (7, 2, True), (14, 2, False), (7, 0, False),
])
def test_random_rois_fp32_match_reference(pool, rng, output_size, sampling_ratio, aligned):
    feats = make_features(rng, batch=2, channels=4, height=H, width=W)
    rois = make_rois(rng, 60, batch=2, height=H, width=W)
    assert_matches(pool, rois, feats, FP32_TOL, output_size=output_size, sampling_ratio=sampling_ratio, aligned=aligned)


@pytest.mark.parametrize("output_size", [7, 14])
def test_random_rois_fp16_match_reference(pool, rng, output_size):
    feats = [f.astype(np.float16) for f in make_features(rng, batch=2, channels=4, height=H, width=W)]
    rois = make_rois(rng, 60, batch=2, height=H, width=W).astype(np.float16)
    assert_matches(pool, rois, feats, FP16_TOL, output_size=output_size)


EDGE_BOXES = np.array([
    [0, -30.0, -20.0, 40.0, 50.0],      # partly outside, top-left
    [1, 200.0, 150.0, 300.0, 260.0],    # partly outside, bottom-right
    [0, -400.0, -300.0, -250.0, -100.0],  # fully outside, negative side
    [1, 600.0, 500.0, 900.0, 800.0],    # fully outside, beyond the image
    [0, 50.0, 60.0, 50.0, 60.0],        # zero size
    [1, 30.0, 40.0, 30.0, 90.0],        # zero width
    [0, -2000.0, -1500.0, 2000.0, 1500.0],  # huge: far bigger than the image
    [1, 0.0, 0.0, 248.0, 200.0],        # exactly the image
    [0, 10.0, 10.0, 234.0, 234.0],      # 224x224: the canonical box, level 4
    [1, 10.0, 10.0, 122.0, 122.0],      # 112x112: level 3 boundary
    [0, 100.0, 20.0, 80.0, 60.0],       # inverted x: negative area, pooled to zero like the reference
    [1, 120.0, 90.0, 60.0, 30.0],       # inverted x and y: positive area, empty sampling grid
    [0, 0.2, 0.3, 1.1, 0.9],            # sub-pixel
], dtype=np.float32)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_edge_case_rois_fp32(pool, rng, aligned, sampling_ratio):
    feats = make_features(rng, batch=2, channels=3, height=H, width=W)
    assert_matches(pool, EDGE_BOXES, feats, FP32_TOL, output_size=7, sampling_ratio=sampling_ratio, aligned=aligned)


def test_edge_case_rois_fp16(pool, rng):
    feats = [f.astype(np.float16) for f in make_features(rng, batch=2, channels=3, height=H, width=W)]
    assert_matches(pool, EDGE_BOXES.astype(np.float16), feats, FP16_TOL, output_size=14)


def test_fully_outside_and_degenerate_rois_pool_to_zero(pool, rng):
    feats = make_features(rng, batch=2, channels=3, height=H, width=W)
    out = pool(EDGE_BOXES, feats, STRIDES, output_size=7)
    assert np.all(out[[2, 3, 4, 5, 10, 11]] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_zero_rois_gives_empty_output(pool, rng, dtype):
    feats = [f.astype(dtype) for f in make_features(rng, batch=1, channels=5, height=H, width=W)]
    out = pool(np.zeros((0, 5), dtype), feats, STRIDES, output_size=7)
    assert out.shape == (0, 5, 7, 7) and out.dtype == dtype


def test_batch_index_selects_image(pool, rng):
    feats = make_features(rng, batch=3, channels=2, height=H, width=W)
    box = [20.0, 30.0, 140.0, 120.0]
    rois = np.array([[b, *box] for b in range(3)], np.float32)
    out = assert_matches(pool, rois, feats, FP32_TOL, output_size=7)
    assert not np.allclose(out[0], out[1]) and not np.allclose(out[1], out[2])


def test_each_level_is_used(pool, rng):
    # Level-specific constant maps: each RoI's output reveals which level pooled it.
    feats = [np.full((1, 1, -(-H // s), -(-W // s)), float(i + 1), np.float32) for i, s in enumerate(STRIDES)]
    sides = np.array([50.0, 150.0, 300.0, 600.0])  # levels 2, 3, 4, 5: floor(4 + log2(side / 224))
    rois = np.array([[0, 0.0, 0.0, s, s] for s in sides], np.float32)
    out = pool(rois, feats, STRIDES, output_size=7, sampling_ratio=2)
    centre = out[:, 0, 0, 0]  # the top-left bin lies inside the map for every box
    np.testing.assert_allclose(centre, [1.0, 2.0, 3.0, 4.0], atol=1e-5)


def test_canonical_attributes_are_honoured(pool, rng):
    feats = make_features(rng, batch=1, channels=2, height=H, width=W)
    rois = make_rois(rng, 30, batch=1, height=H, width=W)
    assert_matches(pool, rois, feats, FP32_TOL, output_size=7, canonical_box_size=112, canonical_level=3)


def test_matches_torchvision_directly_on_one_level(pool, rng):
    # Independent of poolers.py: a single-level pyramid reduces the op to torchvision's roi_align.
    from torchvision.ops import roi_align

    feat = rng.standard_normal((2, 3, 40, 50)).astype(np.float32)
    rois = make_rois(rng, 40, batch=2, height=160, width=200)
    out = pool(rois, [feat], [4], output_size=7)
    dev = getattr(pool, "device", "cpu")
    ref = roi_align(torch.from_numpy(feat).to(dev), torch.from_numpy(rois).to(dev), 7, 0.25, 0, True).cpu().numpy()
    assert np.max(np.abs(out - ref)) <= FP32_TOL


def test_invalid_arguments_raise(pool, rng):
    feats = make_features(rng, batch=1, channels=2, height=H, width=W)
    rois = make_rois(rng, 3, batch=1, height=H, width=W)
    with pytest.raises(ValueError, match="powers of two"):
        pool(rois, feats, [4, 8, 16, 24], output_size=7)
    with pytest.raises(ValueError, match="feature maps"):
        pool(rois, feats[:3], STRIDES, output_size=7)
    with pytest.raises(TypeError):
        pool(rois.astype(np.float16), feats, STRIDES, output_size=7)
    with pytest.raises(ValueError, match="output_size"):
        pool(rois, feats, STRIDES, output_size=0)


@pytest.mark.skipif(NO_CUDA is not None, reason=str(NO_CUDA))
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.float16, 2e-2)])
def test_cuda_kernel_at_detection_size_on_a_side_stream(dtype, tol):
    # Mask R-CNN's real shapes (C=256, 1000 proposals, 800x1216 input) against the model's pooler run
    # by torchvision's CUDA roi_align, with the kernel queued on a non-default stream.
    from instseg_deploy.config.types import PoolerConfig
    from instseg_deploy.modeling.poolers import multilevel_roi_align as pooler
    from instseg_deploy.ops.roi_align_cuda import multilevel_roi_align_cuda

    rng = np.random.default_rng(3)
    feats = [torch.from_numpy(f).cuda() for f in make_features(rng, batch=2, channels=256, height=800, width=1216)]
    rois = torch.from_numpy(make_rois(rng, 1000, batch=2, height=800, width=1216)).cuda()
    feats, rois = [f.to(dtype) for f in feats], rois.to(dtype)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    for output_size in (7, 14):
        with torch.cuda.stream(stream):
            out = multilevel_roi_align_cuda(rois, feats, STRIDES, output_size)
        stream.synchronize()
        ref = pooler([f.float() for f in feats], rois.float(), STRIDES, PoolerConfig(resolution=output_size))
        err = (out.float() - ref).abs().max().item()
        assert out.dtype == dtype and err <= tol, f"output {output_size}: max abs error {err}"
