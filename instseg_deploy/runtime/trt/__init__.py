"""TensorRT runtime (Polygraphy-style split): util, profiles, sidecar checks, plugin library, runner."""
