"""COCO evaluation of backends (AP as detectron2 reports it)."""
