"""The names of an exported graph's inputs and outputs: the contract between pre/post-processing and
every backend's graph (ONNX, OpenVINO IR, TensorRT engine)."""

# Inputs: images (N, 3, H, W) float32 padded; image_sizes (N, 2) int64, each image's resized (h, w);
# original_sizes (N, 2) int64 only for graphs that paste masks.
IMAGES, IMAGE_SIZES, ORIGINAL_SIZES = "images", "image_sizes", "original_sizes"

# Outputs, flat over the batch: boxes (D, 4), scores (D,), classes (D,), batch_idx (D,), mask_probs
# (D, 28, 28); PASTED_MASKS (D, H, W) bool only for graphs that paste masks.
RAW_OUTPUTS = ("boxes", "scores", "classes", "batch_idx", "mask_probs")
PASTED_MASKS = "masks"
