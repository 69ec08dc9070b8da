"""The training schedule the tests run: tiny images and few proposals, so a few iterations take seconds."""

from __future__ import annotations


def tiny_schedule(max_iter: int, steps: list[int], warmup_iters: int, checkpoint_period: int) -> str:
    """YAML to append to ``_BASE_: tiny_mask_rcnn.yaml``."""
    return f"""
MODEL:
  RPN:
    PRE_NMS_TOPK_TRAIN: 200
    POST_NMS_TOPK_TRAIN: 100
  ROI_HEADS:
    BATCH_SIZE_PER_IMAGE: 32
INPUT:
  MIN_SIZE_TRAIN: [64, 80]
  MAX_SIZE_TRAIN: 128
  MIN_SIZE_TEST: 64
  MAX_SIZE_TEST: 128
DATALOADER:
  NUM_WORKERS: 0
SOLVER:
  IMS_PER_BATCH: 2
  BASE_LR: 0.01
  MAX_ITER: {max_iter}
  STEPS: {steps}
  WARMUP_ITERS: {warmup_iters}
  CHECKPOINT_PERIOD: {checkpoint_period}
"""
