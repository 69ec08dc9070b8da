// Image files <-> Image, the way the Python side reads them (cv2.imdecode(..., IMREAD_COLOR)):
// 8-bit BGR, grayscale expanded to three equal channels, alpha dropped, 16-bit reduced to 8 bits,
// JPEG EXIF orientation applied. JPEG via libjpeg-turbo (pixel-identical to cv2's decoder with its
// default settings), PNG via libpng.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "instseg/types.h"

namespace instseg {

// Reads a JPEG or PNG file as BGR. Throws instseg::Error for a missing, unreadable or unsupported file.
Image read_image(const std::string& path);

// Decodes JPEG or PNG bytes (format from the signature); `name` is used in error messages.
Image decode_image(const uint8_t* data, size_t size, const std::string& name);

// Writes a BGR image as an 8-bit RGB PNG, atomically (a temporary file renamed into place).
void write_png(const std::string& path, const Image& bgr);

}  // namespace instseg
