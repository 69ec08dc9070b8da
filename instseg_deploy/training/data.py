"""Training batches: detectron2's augmentation, a seeded infinite sampler per rank, collation.

Every random choice of a sample (its short edge, its flip) is drawn from a generator seeded
by (seed, the sample's position in the stream), and the stream itself is a pure function of
the seed. So the batches of iteration i are the same whether a run got there directly or
was resumed: resuming needs only the iteration number.
"""

from __future__ import annotations

import itertools
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from instseg_deploy.config.types import InputConfig
from instseg_deploy.data.coco import DatasetError, read_dataset_image
from instseg_deploy.lifetime import die_with_parent
from instseg_deploy.processing.preprocess import padded_shape, resize, resized_shape
from instseg_deploy.training.records import TrainRecord
from instseg_deploy.training.targets import ImageTargets, InstanceMask

# detectron2's filter_empty_instances: boxes this thin after the transforms are dropped.
_MIN_BOX_SIDE = 1e-5


@dataclass(frozen=True)
class Augmentation:
    """detectron2's training augmentation: ResizeShortestEdge, then RandomFlip (p = 0.5)."""

    min_sizes: tuple[int, ...]
    max_size: int
    sampling: str  # "choice": one of min_sizes; "range": uniform in [min_sizes[0], min_sizes[1]]
    flip: str  # "horizontal", "vertical" or "none"
    input_format: str  # channel order of the network

    @staticmethod
    def from_input_config(cfg: InputConfig) -> Augmentation:
        if cfg.min_size_train_sampling not in ("choice", "range"):
            raise DatasetError(f"INPUT.MIN_SIZE_TRAIN_SAMPLING {cfg.min_size_train_sampling!r} is not supported "
                               "(choice or range)")
        if cfg.min_size_train_sampling == "range" and len(cfg.min_size_train) != 2:
            raise DatasetError("INPUT.MIN_SIZE_TRAIN_SAMPLING 'range' needs MIN_SIZE_TRAIN = [low, high]")
        if cfg.random_flip not in ("horizontal", "vertical", "none"):
            raise DatasetError(f"INPUT.RANDOM_FLIP {cfg.random_flip!r} is not supported (horizontal, vertical, none)")
        return Augmentation(cfg.min_size_train, cfg.max_size_train, cfg.min_size_train_sampling, cfg.random_flip,
                            cfg.format)

    def draw(self, rng: np.random.Generator) -> tuple[int, bool]:
        """(short edge, flip?) for one sample."""
        if self.sampling == "choice":
            short = int(self.min_sizes[int(rng.integers(len(self.min_sizes)))])
        else:
            short = int(rng.integers(self.min_sizes[0], self.min_sizes[1] + 1))
        return short, self.flip != "none" and bool(rng.random() < 0.5)


@dataclass
class TrainSample:
    """One augmented image: (h, w, 3) uint8 in the network's channel order and its targets.

    ``skipped``: (image id, reason) of unreadable images replaced by this one; ``error`` is set
    instead of a sample when an image is unreadable and skipping is off.
    """

    image_id: int
    image: np.ndarray | None
    targets: ImageTargets | None
    skipped: list[tuple[int, str]] = field(default_factory=list)
    error: str | None = None


def _flip_coords(values: np.ndarray, extent: float) -> np.ndarray:
    return extent - values


def transform_record(record: TrainRecord, image: np.ndarray, aug: Augmentation, short: int, flip: bool
                     ) -> tuple[np.ndarray, ImageTargets]:
    """Resize (and flip) an image read as BGR and its annotations, as detectron2's DatasetMapper.

    Boxes are scaled, flipped, clipped to the image and dropped when empty; polygons are
    scaled and flipped; RLE masks are decoded, resized with nearest neighbour and flipped.
    """
    if aug.input_format == "RGB":
        image = image[:, :, ::-1]
    height, width = resized_shape(record.height, record.width, short, aug.max_size)
    image = resize(np.ascontiguousarray(image), height, width)
    sx, sy = width / record.width, height / record.height
    horizontal = flip and aug.flip == "horizontal"
    vertical = flip and aug.flip == "vertical"
    if horizontal:
        image = image[:, ::-1]
    elif vertical:
        image = image[::-1]
    boxes, classes, masks = [], [], []
    for ann in record.annotations:
        x0, y0, x1, y1 = ann.box[0] * sx, ann.box[1] * sy, ann.box[2] * sx, ann.box[3] * sy
        if horizontal:
            x0, x1 = width - x1, width - x0
        elif vertical:
            y0, y1 = height - y1, height - y0
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        if x1 - x0 <= _MIN_BOX_SIDE or y1 - y0 <= _MIN_BOX_SIDE:
            continue
        boxes.append((x0, y0, x1, y1))
        classes.append(ann.category)
        masks.append(_transform_mask(ann.segmentation, sx, sy, width, height, horizontal, vertical))
    targets = ImageTargets(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                           torch.tensor(classes, dtype=torch.int64), masks)
    return np.require(image, requirements=["C", "W"]), targets  # writable: torch wraps it without copying


def _transform_mask(segm, sx: float, sy: float, width: int, height: int, horizontal: bool,
                    vertical: bool) -> InstanceMask:
    if isinstance(segm, list):
        polygons = []
        for p in segm:
            p = p.copy()
            p[0::2] *= sx
            p[1::2] *= sy
            if horizontal:
                p[0::2] = _flip_coords(p[0::2], width)
            elif vertical:
                p[1::2] = _flip_coords(p[1::2], height)
            polygons.append(p)
        return polygons
    bitmap = mask_utils.decode(segm)
    bitmap = np.asarray(Image.fromarray(bitmap).resize((width, height), Image.NEAREST))
    if horizontal:
        bitmap = bitmap[:, ::-1]
    elif vertical:
        bitmap = bitmap[::-1]
    return np.ascontiguousarray(bitmap)


class TrainingDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by (record index, stream position); see :class:`BatchSampler`."""

    def __init__(self, records: list[TrainRecord], aug: Augmentation, seed: int, skip_bad: bool):
        self.records = records
        self.aug = aug
        self.seed = seed
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, record: TrainRecord) -> np.ndarray:
        return read_dataset_image(record.path, record.image_id, record.height, record.width)

    def __getitem__(self, item: tuple[int, int]) -> TrainSample:
        """A failure is returned, not raised: a DataLoader worker would bury it in a traceback."""
        index, position = item
        skipped: list[tuple[int, str]] = []
        for attempt in range(len(self.records)):
            # An unreadable image is replaced by the next one in the dataset (deterministic).
            record = self.records[(index + attempt) % len(self.records)]
            try:
                image = self._read(record)
            except DatasetError as e:
                if not self.skip_bad:
                    return TrainSample(record.image_id, None, None, error=str(e))
                skipped.append((record.image_id, str(e)))
                continue
            short, flip = self.aug.draw(np.random.default_rng([self.seed, position]))
            image, targets = transform_record(record, image, self.aug, short, flip)
            return TrainSample(record.image_id, image, targets, skipped)
        return TrainSample(-1, None, None, skipped, error="no training image could be read")


def stream_items(size: int, seed: int, rank: int, world_size: int) -> Iterator[tuple[int, int]]:
    """This rank's share of an infinite shuffled stream: (record index, stream position).

    Epoch e is a permutation seeded by (seed, e); rank r takes positions r, r + W, r + 2W, ...
    (detectron2's TrainingSampler), so ranks see disjoint samples.
    """
    def every_position() -> Iterator[tuple[int, int]]:
        position = 0
        for epoch in itertools.count():
            for index in np.random.default_rng([seed, epoch]).permutation(size):
                yield int(index), position
                position += 1

    return itertools.islice(every_position(), rank, None, world_size)


def group_batches(items: Iterator[tuple[int, int]], batch_size: int, groups: list[int] | None
                  ) -> Iterator[list[tuple[int, int]]]:
    """Consecutive batches; with ``groups`` (0 for landscape, 1 for portrait records), each
    batch holds one orientation only (detectron2's AspectRatioGroupedDataset)."""
    buckets: dict[int, list[tuple[int, int]]] = {0: [], 1: []}
    for item in items:
        bucket = buckets[groups[item[0]] if groups is not None else 0]
        bucket.append(item)
        if len(bucket) == batch_size:
            yield list(bucket)
            bucket.clear()


class BatchSampler:
    """Infinite batches of (record index, stream position) for one rank, from batch ``start`` on."""

    def __init__(self, records: list[TrainRecord], batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 group_by_aspect: bool = True, start: int = 0):
        self.size = len(records)
        self.groups = [0 if r.width > r.height else 1 for r in records] if group_by_aspect else None
        self.batch_size, self.seed, self.rank, self.world_size, self.start = batch_size, seed, rank, world_size, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        batches = group_batches(stream_items(self.size, self.seed, self.rank, self.world_size), self.batch_size,
                                self.groups)
        return itertools.islice(batches, self.start, None)


@dataclass
class TrainBatch:
    """images (N, 3, H, W) float32 padded with the pixel mean; image_sizes (N, 2) int64."""

    images: torch.Tensor
    image_sizes: torch.Tensor
    targets: list[ImageTargets]
    image_ids: list[int]
    skipped: list[tuple[int, str]]
    error: str | None = None


def collate(samples: list[TrainSample], pixel_mean: tuple[float, ...], size_divisibility: int) -> TrainBatch:
    skipped = [s for sample in samples for s in sample.skipped]
    errors = [sample.error for sample in samples if sample.error]
    if errors:
        return TrainBatch(torch.empty(0), torch.empty(0), [], [], skipped, error=errors[0])
    sizes = np.array([s.image.shape[:2] for s in samples], dtype=np.int64)
    height, width = padded_shape(sizes, size_divisibility)
    images = torch.empty((len(samples), 3, height, width), dtype=torch.float32)
    images[:] = torch.tensor(pixel_mean, dtype=torch.float32)[None, :, None, None]
    for i, s in enumerate(samples):
        images[i, :, : s.image.shape[0], : s.image.shape[1]] = torch.from_numpy(s.image).permute(2, 0, 1)
    return TrainBatch(images, torch.from_numpy(sizes), [s.targets for s in samples],
                      [s.image_id for s in samples], skipped)


def build_loader(dataset: TrainingDataset, sampler: BatchSampler, pixel_mean: tuple[float, ...],
                 size_divisibility: int, num_workers: int) -> Iterator[TrainBatch]:
    """An endless iterator of batches (workers > 0: loaded in parallel, in order). Workers die with
    this process, even when it is SIGKILLed: left alone, an orphaned worker can stay blocked for good."""
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=num_workers,
        collate_fn=partial(collate, pixel_mean=pixel_mean, size_divisibility=size_divisibility),
        persistent_workers=num_workers > 0,
        worker_init_fn=partial(_worker_init, os.getpid()) if num_workers > 0 else None)
    return iter(loader)


def _worker_init(parent_pid: int, worker_id: int) -> None:
    die_with_parent(parent_pid)
    # resource_sharer's serving thread catches its errors and passes them to sys.excepthook itself
    # (threading.excepthook never sees them)
    sys.excepthook = partial(_quiet_hangup, sys.excepthook)


def _quiet_hangup(default, kind: type[BaseException], error: BaseException, trace) -> None:
    """A parent interrupted (Ctrl-C, SIGTERM) while it fetches a batch's shared tensors hangs up on this
    worker's fd-sharing thread (multiprocessing.resource_sharer): the parent's "interrupted" says it all,
    so that thread's ConnectionResetError or EOFError is not printed after it. Anything else is."""
    frames = traceback.extract_tb(trace) if trace is not None else []
    if issubclass(kind, (ConnectionError, EOFError)) and any(f.filename.endswith("resource_sharer.py") for f in frames):
        return
    default(kind, error, trace)
