// Error reporting of the TensorRT plugin through the logger TensorRT hands to setLoggerFinder().
#pragma once

namespace instseg {

// Logs at kERROR if TensorRT provided a logger finder (plugin_entry_points.cpp); silent otherwise.
void log_plugin_error(char const* message) noexcept;

} // namespace instseg
