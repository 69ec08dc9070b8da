// A 5x7 pixel font for overlay labels (digits, letters drawn as capitals, a few signs).
#pragma once

#include <array>
#include <cstdint>

namespace instseg {

inline constexpr int kGlyphWidth = 5;
inline constexpr int kGlyphHeight = 7;

// Seven rows of five bits (bit 4 is the leftmost column); '?' for characters the font lacks.
const std::array<uint8_t, kGlyphHeight>& glyph(char c);

}  // namespace instseg
