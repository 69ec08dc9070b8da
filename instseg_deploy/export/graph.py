"""The module that is exported: the detector plus, optionally, in-graph mask pasting."""

from __future__ import annotations

import torch
from torch import nn

from instseg_deploy.export.plugin_roi_align import with_plugin_poolers
from instseg_deploy.modeling import MaskRCNN

ROI_ALIGN_FLAVOURS = ("onnx", "plugin")  # standard RoiAlign ops per FPN level, or our one-node plugin


def paste_masks_in_graph(mask_probs: torch.Tensor, boxes: torch.Tensor, height: torch.Tensor,
                         width: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(D, M, M) probabilities pasted into (D, height, width) bool masks at their (D, 4) boxes.

    The same bilinear sampling as the host's ``paste_masks`` (grid_sample, align_corners=False,
    zero padding), written separably as two matmuls with hat-function weights
    max(0, 1 - |src - j|), which needs no gather and exports to plain ONNX ops.
    """
    m = mask_probs.shape[-1]
    j = torch.arange(m, device=boxes.device, dtype=torch.float32)

    def weights(coords, lo, hi):  # (D, L) pixel centres -> (D, L, M)
        grid = (coords - lo[:, None]) / (hi - lo)[:, None] * 2 - 1  # grid_sample's [-1, 1] coordinates
        src = ((grid + 1) * m - 1) / 2
        return torch.clamp(1 - torch.abs(src[..., None] - j), min=0)

    ys = torch.arange(height, device=boxes.device).to(torch.float32)[None, :] + 0.5
    xs = torch.arange(width, device=boxes.device).to(torch.float32)[None, :] + 0.5
    wy = weights(ys, boxes[:, 1], boxes[:, 3])
    wx = weights(xs, boxes[:, 0], boxes[:, 2])
    return torch.matmul(torch.matmul(wy, mask_probs), wx.transpose(1, 2)) >= threshold


class ExportableMaskRCNN(nn.Module):
    """MaskRCNN.forward, plus (``paste_masks=True``) full-resolution masks computed in the graph.

    Inputs: images (N, 3, H, W) float32 padded with the pixel mean; image_sizes (N, 2) int64
    resized (h, w); with pasting also original_sizes (N, 2) int64. Outputs: RAW_OUTPUTS, plus
    masks (D, max original h, max original w) bool when pasting; each image's masks occupy the
    top-left (its original h, w) of that canvas.

    ``roi_align="plugin"`` traces a view of ``model`` whose ROI heads pool through our TensorRT
    plugin node (``plugin_roi_align``); ``model`` itself is not modified. The detector is held as
    ``self.model``, which puts every node name under ``/model/`` (see ``stage_names``).
    """

    def __init__(self, model: MaskRCNN, paste_masks: bool = False, roi_align: str = "onnx"):
        super().__init__()
        if roi_align not in ROI_ALIGN_FLAVOURS:
            raise ValueError(f"roi_align must be one of {ROI_ALIGN_FLAVOURS}, got {roi_align!r}")
        self.model = with_plugin_poolers(model) if roi_align == "plugin" else model
        self.paste_masks = paste_masks

    def forward(self, images: torch.Tensor, image_sizes: torch.Tensor, original_sizes: torch.Tensor | None = None):
        boxes, scores, classes, batch_idx, mask_probs = self.model(images, image_sizes)
        if not self.paste_masks:
            return boxes, scores, classes, batch_idx, mask_probs
        in_hw = image_sizes[batch_idx].to(torch.float32)
        out_hw = original_sizes[batch_idx].to(torch.float32)
        scale = torch.stack([out_hw[:, 1] / in_hw[:, 1], out_hw[:, 0] / in_hw[:, 0]], dim=1).repeat(1, 2)
        scaled = boxes * scale
        limit = torch.stack([out_hw[:, 1], out_hw[:, 0]], dim=1).repeat(1, 2)
        scaled = torch.minimum(torch.clamp(scaled, min=0), limit)
        max_hw = original_sizes.max(dim=0).values
        masks = paste_masks_in_graph(mask_probs, scaled, max_hw[0], max_hw[1])
        return boxes, scores, classes, batch_idx, mask_probs, masks
