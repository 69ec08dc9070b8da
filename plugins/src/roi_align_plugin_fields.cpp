#include "roi_align_plugin_fields.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace instseg {

namespace {

using nvinfer1::PluginField;
using nvinfer1::PluginFieldType;

// The field names are the op contract's (instseg/roi_align_contract.h, via the plugin header).
using roi_align_contract::kAligned;
using roi_align_contract::kCanonicalBoxSize;
using roi_align_contract::kCanonicalLevel;
using roi_align_contract::kFeatmapStrides;
using roi_align_contract::kOutputSize;
using roi_align_contract::kSamplingRatio;

bool read_integers(PluginField const& field, std::vector<int64_t>& values)
{
    values.clear();
    if (field.length < 0 || (field.length > 0 && field.data == nullptr)) {
        return false;
    }
    for (int32_t i = 0; i < field.length; ++i) {
        switch (field.type) {
        case PluginFieldType::kINT8: values.push_back(static_cast<int8_t const*>(field.data)[i]); break;
        case PluginFieldType::kINT16: values.push_back(static_cast<int16_t const*>(field.data)[i]); break;
        case PluginFieldType::kINT32: values.push_back(static_cast<int32_t const*>(field.data)[i]); break;
        case PluginFieldType::kINT64: values.push_back(static_cast<int64_t const*>(field.data)[i]); break;
        default: return false;
        }
    }
    return true;
}

// "4,8,16,32" (commas or spaces): the form featmap_strides takes in models adapted for ONNX Runtime.
bool read_integer_list_text(PluginField const& field, std::vector<int64_t>& values)
{
    values.clear();
    if (field.data == nullptr || field.length <= 0) {
        return false;
    }
    std::string const text(static_cast<char const*>(field.data),
        strnlen(static_cast<char const*>(field.data), static_cast<size_t>(field.length)));
    char const* cursor = text.c_str();
    while (*cursor != '\0') {
        if (*cursor == ',' || *cursor == ' ') {
            ++cursor;
            continue;
        }
        char* end = nullptr;
        long const value = std::strtol(cursor, &end, 10);
        if (end == cursor) {
            return false;
        }
        values.push_back(value);
        cursor = end;
    }
    return !values.empty();
}

bool read_scalar(PluginField const& field, int32_t& out)
{
    std::vector<int64_t> values;
    if (!read_integers(field, values) || values.size() != 1) {
        return false;
    }
    out = static_cast<int32_t>(values[0]);
    return true;
}

PluginField int_field(char const* name, int32_t const* data, int32_t length)
{
    return PluginField(name, data, PluginFieldType::kINT32, length);
}

} // namespace

std::vector<PluginField> roi_align_field_names()
{
    // Data pointers stay null: the creator only advertises names, types and lengths.
    return {
        int_field(kOutputSize, nullptr, 1),
        int_field(kSamplingRatio, nullptr, 1),
        int_field(kAligned, nullptr, 1),
        int_field(kCanonicalBoxSize, nullptr, 1),
        int_field(kCanonicalLevel, nullptr, 1),
        int_field(kFeatmapStrides, nullptr, 4),
    };
}

bool parse_roi_align_fields(nvinfer1::PluginFieldCollection const* fc, RoiAlignAttributes& attrs, std::string& error)
{
    if (fc == nullptr) {
        return true; // all defaults
    }
    for (int32_t i = 0; i < fc->nbFields; ++i) {
        PluginField const& field = fc->fields[i];
        if (field.name == nullptr) {
            continue;
        }
        std::string const name(field.name);
        bool ok = true;
        if (name == kOutputSize) {
            ok = read_scalar(field, attrs.output_size);
        } else if (name == kSamplingRatio) {
            ok = read_scalar(field, attrs.sampling_ratio);
        } else if (name == kAligned) {
            ok = read_scalar(field, attrs.aligned);
        } else if (name == kCanonicalBoxSize) {
            ok = read_scalar(field, attrs.canonical_box_size);
        } else if (name == kCanonicalLevel) {
            ok = read_scalar(field, attrs.canonical_level);
        } else if (name == kFeatmapStrides) {
            std::vector<int64_t> values;
            ok = field.type == PluginFieldType::kCHAR ? read_integer_list_text(field, values)
                                                      : read_integers(field, values);
            if (ok) {
                attrs.featmap_strides.assign(values.begin(), values.end());
            }
        }
        if (!ok) {
            error = "malformed plugin field '" + name + "'";
            return false;
        }
    }
    return true;
}

std::vector<PluginField> roi_align_fields_of(RoiAlignAttributes const& attrs)
{
    return {
        int_field(kOutputSize, &attrs.output_size, 1),
        int_field(kSamplingRatio, &attrs.sampling_ratio, 1),
        int_field(kAligned, &attrs.aligned, 1),
        int_field(kCanonicalBoxSize, &attrs.canonical_box_size, 1),
        int_field(kCanonicalLevel, &attrs.canonical_level, 1),
        int_field(kFeatmapStrides, attrs.featmap_strides.data(), static_cast<int32_t>(attrs.featmap_strides.size())),
    };
}

} // namespace instseg
