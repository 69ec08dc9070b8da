"""Run a predictor over a dataset, turning each image's instances into COCO results at once.

Masks are RLE-encoded per image as soon as they are predicted (with the predictor's "rle" or
"cropped" format, from each box region alone), so memory stays flat however long the run. Reading
and postprocessing overlap with inference (runtime.pipeline) unless ``overlap`` is off.
"""

from __future__ import annotations

from collections.abc import Callable

from instseg_deploy.coco_format import instances_to_coco
from instseg_deploy.data.coco import CocoDataset, DatasetError, ImageRecord, read_dataset_image
from instseg_deploy.runtime.pipeline import Prediction, predict_stream
from instseg_deploy.runtime.predictor import Predictor


def shard(images: list[ImageRecord], rank: int, world_size: int) -> list[ImageRecord]:
    """This rank's share of the images (strided, so shards stay balanced)."""
    return images[rank::world_size]


def predict_dataset(predictor: Predictor, dataset: CocoDataset, images: list[ImageRecord],
                    on_image: Callable[[], None] | None = None, overlap: bool = True) -> list[dict]:
    """COCO results (dataset category ids, RLE masks) for ``images`` of ``dataset``."""
    if len(predictor.class_names) != dataset.num_classes:
        raise DatasetError(f"the model has {len(predictor.class_names)} classes but the dataset has "
                           f"{dataset.num_classes} ({', '.join(dataset.class_names[:6])}...)")
    def read(record: ImageRecord):
        return read_dataset_image(record.path, record.id, record.height, record.width)

    if isinstance(predictor, Predictor):
        stream = predict_stream(predictor, images, read, overlap=overlap)
    else:  # any callable from an image to Instances (a user's own predictor, a test's stand-in)
        stream = (Prediction(record, instances=predictor(read(record))) for record in images)
    results: list[dict] = []
    for prediction in stream:
        if prediction.error is not None:  # AP over fewer images would be another number: stop
            raise prediction.error
        results.extend(instances_to_coco(prediction.instances, prediction.item.id, dataset.category_ids))
        if on_image is not None:
            on_image()
    return results
