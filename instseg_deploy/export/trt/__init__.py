"""TensorRT engine building: precision plan, calibrator and builder; imports runtime/trt, never the reverse."""
