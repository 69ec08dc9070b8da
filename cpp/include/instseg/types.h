// Plain data shared by every stage: images, network batches, raw network outputs, instances.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace instseg {

// An 8-bit, 3-channel image: pixels (height, width, 3) row-major, channels interleaved.
// Channel order is whatever the producer says (read_image gives BGR, like cv2.imread).
struct Image {
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int h, int w) : height(h), width(w), pixels(static_cast<size_t>(h) * w * 3) {}
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * 3; }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * 3; }
};

// The network's input: images (n, 3, height, width) float32 padded with the pixel mean (the graph
// normalises); image_sizes (n, 2) resized (h, w) before padding; original_sizes (n, 2) (h, w) of
// the user's images. Only the first `real` slots hold user images (fixed-batch models get fillers).
struct Batch {
  int n = 0;
  int height = 0;
  int width = 0;
  int real = 0;
  std::vector<float> images;
  std::vector<int64_t> image_sizes;
  std::vector<int64_t> original_sizes;
};

// What the network returns for a batch, D detections in all (network-input pixels):
// boxes (D, 4) xyxy, scores (D,), classes (D,), batch_idx (D,), mask_probs (D, M, M) sigmoid
// probabilities of each detection's class; with in-graph pasting also masks (D, canvas_h, canvas_w),
// each image's masks in the top-left (original h, w) of the canvas.
struct RawDetections {
  int count = 0;
  std::vector<float> boxes;
  std::vector<float> scores;
  std::vector<int64_t> classes;
  std::vector<int64_t> batch_idx;
  int mask_size = 0;  // M
  std::vector<float> mask_probs;
  bool has_pasted_masks = false;
  int canvas_height = 0;
  int canvas_width = 0;
  std::vector<uint8_t> pasted_masks;
};

// How an Instance holds its mask (every format holds exactly the same pixels):
//   dense    mask: the full (image height, width) mask, row-major 0/1
//   rle      rle: pycocotools' compressed RLE "counts" string of that full-image mask, computed from
//            the region alone (no full-image buffer)
//   cropped  region_mask: (region.height, region.width) row-major 0/1 over `region`; every pixel
//            outside the region is 0
//   none     no mask at all (region left empty)
enum class MaskFormat { dense, rle, cropped, none };

// A rectangle of image pixels: rows [top, top + height), columns [left, left + width).
struct Region {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
};

// One detection in original-image pixels. Only the field of its MaskFormat holds the mask (see
// MaskFormat); `region` is set for every format but none: the box grown by one pixel and clipped
// to the image, where pasting can turn pixels on (for masks pasted in the graph, also grown to any
// pixel the graph turned on outside it).
struct Instance {
  std::array<float, 4> box{};  // x0, y0, x1, y1
  float score = 0.0f;
  int64_t class_id = 0;  // 0-based contiguous class index
  Region region;
  std::vector<uint8_t> mask;         // dense
  std::string rle;                   // rle
  std::vector<uint8_t> region_mask;  // cropped
};

// All detections of one image, sorted by decreasing score (the network's order).
struct Instances {
  int height = 0;
  int width = 0;
  std::vector<Instance> items;
};

}  // namespace instseg
