// JPEG/PNG decoding to BGR with cv2.imdecode(IMREAD_COLOR)'s conversions, and PNG writing.
//
// libjpeg and libpng report errors by longjmp; every decoder keeps its state in a heap object
// created before setjmp and frees it in one place, and no C++ object with a destructor is created
// between setjmp and the library calls, so the jump skips nothing.
#include "instseg/image_io.h"

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "instseg/error.h"

namespace instseg {
namespace {

// ---------------------------------------------------------------- JPEG

struct JpegErrorManager {
  jpeg_error_mgr base;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

// Warnings about corrupt data: decode what is there, as cv2 does, except a file that ends early,
// which cv2.imdecode refuses (libjpeg would pad it with gray).
void jpeg_warning(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_error_exit(cinfo);
}

struct JpegState {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err{};
  bool created = false;
  int orientation = 1;  // EXIF; kept here, not in a local that longjmp could clobber
  ~JpegState() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
};

// EXIF orientation tag (0x0112) from an APP1 "Exif" payload; 1 (as stored) when absent or invalid.
int exif_orientation(const uint8_t* data, size_t size) {
  if (size < 14 || std::memcmp(data, "Exif\0\0", 6) != 0) return 1;
  const uint8_t* tiff = data + 6;
  const size_t n = size - 6;
  const bool little = tiff[0] == 'I' && tiff[1] == 'I';
  if (!little && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
  auto u16 = [&](size_t at) -> unsigned {
    return little ? tiff[at] | (tiff[at + 1] << 8) : (tiff[at] << 8) | tiff[at + 1];
  };
  auto u32 = [&](size_t at) -> size_t {
    return little
               ? size_t(tiff[at]) | size_t(tiff[at + 1]) << 8 | size_t(tiff[at + 2]) << 16 | size_t(tiff[at + 3]) << 24
               : size_t(tiff[at]) << 24 | size_t(tiff[at + 1]) << 16 | size_t(tiff[at + 2]) << 8 | size_t(tiff[at + 3]);
  };
  const size_t ifd = u32(4);
  if (ifd + 2 > n) return 1;
  const unsigned entries = u16(ifd);
  for (unsigned i = 0; i < entries; ++i) {
    const size_t entry = ifd + 2 + size_t(i) * 12;
    if (entry + 12 > n) return 1;
    if (u16(entry) == 0x0112) {
      const unsigned value = u16(entry + 8);
      return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
    }
  }
  return 1;
}

// Applies EXIF orientation 2..8 (what cv2's ApplyExifOrientation does for IMREAD_COLOR).
Image apply_orientation(const Image& in, int orientation) {
  const bool swap = orientation >= 5;  // 5..8 transpose the axes
  Image out(swap ? in.width : in.height, swap ? in.height : in.width);
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int sx = x, sy = y;  // source pixel of output (x, y)
      // One EXIF orientation per line reads as the table it is.
      // clang-format off
      switch (orientation) {
        case 2: sx = in.width - 1 - x; break;                               // mirror horizontally
        case 3: sx = in.width - 1 - x; sy = in.height - 1 - y; break;       // rotate 180
        case 4: sy = in.height - 1 - y; break;                              // mirror vertically
        case 5: sx = y; sy = x; break;                                      // transpose
        case 6: sx = y; sy = in.height - 1 - x; break;                      // rotate 90 clockwise
        case 7: sx = in.width - 1 - y; sy = in.height - 1 - x; break;       // transverse
        case 8: sx = in.width - 1 - y; sy = x; break;                       // rotate 90 counter-clockwise
        default: break;
      }
      // clang-format on
      std::memcpy(out.row(y) + 3 * x, in.row(sy) + 3 * sx, 3);
    }
  }
  return out;
}

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name) {
  auto state = std::make_unique<JpegState>();
  auto image = std::make_unique<Image>();
  jpeg_decompress_struct* cinfo = &state->cinfo;
  cinfo->err = jpeg_std_error(&state->err.base);
  state->err.base.error_exit = jpeg_error_exit;
  state->err.base.emit_message = jpeg_warning;
  if (setjmp(state->err.jump)) {
    throw Error("cannot decode image " + name + " (corrupt JPEG: " + state->err.message + ")");
  }
  jpeg_create_decompress(cinfo);
  state->created = true;
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(cinfo, TRUE);
  for (jpeg_saved_marker_ptr m = cinfo->marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1) state->orientation = exif_orientation(m->data, m->data_length);
  }
  if (cinfo->num_components != 1 && cinfo->num_components != 3) {
    throw Error("cannot decode image " + name + " (CMYK/YCCK JPEG is not supported; convert it to RGB)");
  }
  cinfo->out_color_space = JCS_EXT_BGR;  // libjpeg-turbo converts YCbCr and grayscale to BGR directly
  jpeg_start_decompress(cinfo);
  image->height = static_cast<int>(cinfo->output_height);
  image->width = static_cast<int>(cinfo->output_width);
  image->pixels.resize(static_cast<size_t>(image->height) * image->width * 3);
  while (cinfo->output_scanline < cinfo->output_height) {
    JSAMPROW row = image->row(static_cast<int>(cinfo->output_scanline));
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  jpeg_finish_decompress(cinfo);
  if (state->orientation > 1) return apply_orientation(*image, state->orientation);
  return std::move(*image);
}

// ---------------------------------------------------------------- PNG

struct PngReadState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t offset = 0;
  char message[256] = "";
  ~PngReadState() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

void png_error_handler(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", message);
  png_longjmp(png, 1);
}

void png_warning_handler(png_structp, png_const_charp) {}

void png_read_memory(png_structp png, png_bytep out, png_size_t length) {
  auto* state = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (state->offset + length > state->size) {
    png_error(png, "truncated file");
  }
  std::memcpy(out, state->data + state->offset, length);
  state->offset += length;
}

Image decode_png(const uint8_t* data, size_t size, const std::string& name) {
  auto state = std::make_unique<PngReadState>();
  auto image = std::make_unique<Image>();
  auto rows = std::make_unique<std::vector<png_bytep>>();
  state->data = data;
  state->size = size;
  state->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, state.get(), png_error_handler, png_warning_handler);
  if (state->png == nullptr) throw Error("cannot decode image " + name + " (libpng could not start)");
  state->info = png_create_info_struct(state->png);
  if (state->info == nullptr) throw Error("cannot decode image " + name + " (libpng could not start)");
  if (setjmp(png_jmpbuf(state->png))) {
    throw Error("cannot decode image " + name + " (corrupt PNG: " + state->message + ")");
  }
  png_set_read_fn(state->png, state.get(), png_read_memory);
  png_read_info(state->png, state->info);
  const int bit_depth = png_get_bit_depth(state->png, state->info);
  const int color_type = png_get_color_type(state->png, state->info);
  // The transforms cv2's PNG decoder asks for when reading 8-bit colour:
  if (bit_depth == 16) png_set_strip_16(state->png);  // keep the high byte
  png_set_strip_alpha(state->png);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(state->png);
  if ((color_type & PNG_COLOR_MASK_COLOR) == 0 && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(state->png);
  if (color_type & PNG_COLOR_MASK_COLOR) {
    png_set_bgr(state->png);
  } else {
    png_set_gray_to_rgb(state->png);
  }
  png_set_interlace_handling(state->png);
  png_read_update_info(state->png, state->info);
  image->width = static_cast<int>(png_get_image_width(state->png, state->info));
  image->height = static_cast<int>(png_get_image_height(state->png, state->info));
  if (png_get_rowbytes(state->png, state->info) != static_cast<size_t>(image->width) * 3) {
    png_error(state->png, "unexpected row layout after conversion");
  }
  image->pixels.resize(static_cast<size_t>(image->height) * image->width * 3);
  rows->resize(static_cast<size_t>(image->height));
  for (int y = 0; y < image->height; ++y) (*rows)[static_cast<size_t>(y)] = image->row(y);
  png_read_image(state->png, rows->data());
  png_read_end(state->png, nullptr);
  return std::move(*image);
}

bool is_jpeg(const uint8_t* data, size_t size) {
  return size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF;
}
bool is_png(const uint8_t* data, size_t size) { return size >= 8 && png_sig_cmp(data, 0, 8) == 0; }

// ---------------------------------------------------------------- PNG writing

struct PngWriteState {
  png_structp png = nullptr;
  png_infop info = nullptr;
  FILE* file = nullptr;
  char message[256] = "";
  ~PngWriteState() {
    if (png) png_destroy_write_struct(&png, info ? &info : nullptr);
    if (file) std::fclose(file);
  }
};

void png_write_error_handler(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngWriteState*>(png_get_error_ptr(png));
  std::snprintf(state->message, sizeof(state->message), "%s", message);
  png_longjmp(png, 1);
}

void write_png_file(const std::string& path, const Image& bgr) {
  auto state = std::make_unique<PngWriteState>();
  auto rows = std::make_unique<std::vector<png_bytep>>(static_cast<size_t>(bgr.height));
  for (int y = 0; y < bgr.height; ++y) {
    (*rows)[static_cast<size_t>(y)] = const_cast<png_bytep>(bgr.row(y));
  }
  state->file = std::fopen(path.c_str(), "wb");
  if (state->file == nullptr) throw Error("cannot write " + path + ": " + std::strerror(errno));
  state->png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, state.get(), png_write_error_handler, png_warning_handler);
  if (state->png == nullptr) throw Error("cannot write " + path + " (libpng could not start)");
  state->info = png_create_info_struct(state->png);
  if (state->info == nullptr) throw Error("cannot write " + path + " (libpng could not start)");
  if (setjmp(png_jmpbuf(state->png))) {
    throw Error("cannot write " + path + " (" + state->message + ")");
  }
  png_init_io(state->png, state->file);
  png_set_IHDR(state->png, state->info, static_cast<png_uint_32>(bgr.width), static_cast<png_uint_32>(bgr.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(state->png, state->info);
  png_set_bgr(state->png);  // our pixels are BGR; the file stores RGB
  png_write_image(state->png, rows->data());
  png_write_end(state->png, nullptr);
  if (std::fflush(state->file) != 0) throw Error("cannot write " + path + ": " + std::strerror(errno));
}

}  // namespace

Image decode_image(const uint8_t* data, size_t size, const std::string& name) {
  Image image;
  if (is_jpeg(data, size)) {
    image = decode_jpeg(data, size, name);
  } else if (is_png(data, size)) {
    image = decode_png(data, size, name);
  } else {
    throw Error("cannot decode image " + name + " (not a JPEG or PNG file)");
  }
  if (image.height < 2 || image.width < 2) {
    throw Error("image " + name + " is too small (" + std::to_string(image.width) + "x" + std::to_string(image.height) +
                ")");
  }
  return image;
}

Image read_image(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    throw Error("image not found: " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open image " + path);
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw Error("cannot decode image " + path + " (empty file)");
  return decode_image(bytes.data(), bytes.size(), path);
}

void write_png(const std::string& path, const Image& bgr) {
  const std::string tmp = path + ".tmp";
  try {
    write_png_file(tmp, bgr);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error("cannot write " + path + ": " + ec.message());
  }
}

}  // namespace instseg
