"""A stand-in for the ``tensorrt`` module that records the TensorRT 10 calls our code makes.

It tests *our* wiring (which calls, in which order, with which arguments, and how failures are
reported); it proves nothing about TensorRT. Only the names our code uses exist, spelled and
shaped like TensorRT 10's Python bindings (checked against the bindings' sources).
"""

from __future__ import annotations

import enum
import types

import onnx
from onnx import TensorProto


class FakeRegistry:
    """trt.IPluginRegistry's get_creator / load_library, with scripted outcomes."""

    def __init__(self, registered=False, load_ok=True, registers=True):
        self.registered, self.load_ok, self.registers = registered, load_ok, registers
        self.loaded: list[str] = []

    def get_creator(self, type, version, plugin_namespace=""):
        assert (type, version, plugin_namespace) == ("InstsegMultilevelRoIAlign", "1", "")
        return object() if self.registered else None

    def load_library(self, plugin_path):
        self.loaded.append(plugin_path)
        if not self.load_ok:
            return None
        self.registered = self.registers
        return object()


class FakeTensorRT(types.ModuleType):
    """Records the TensorRT 10 calls our code makes. A test of our wiring, never of TensorRT.

    Only the names our code uses exist here, with the signatures of TensorRT 10's Python
    bindings; ``parse_errors`` / ``build_fails`` / ``flags`` / ``timing_cache_fits`` script the
    failure cases.
    """

    def __init__(self, version="10.3.0", parse_errors=(), build_fails=False, flags=("FP16", "INT8"),
                 timing_cache_fits=True):
        super().__init__("tensorrt")
        fake = self
        self.__version__ = version
        self.calls: list[tuple] = []
        self.registry = FakeRegistry()

        class Severity(enum.IntEnum):
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        class ILogger:
            def __init__(self):
                pass

        ILogger.Severity = Severity
        self.ILogger = ILogger
        self.BuilderFlag = enum.Enum("BuilderFlag", list(flags))
        self.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
        self.TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
        self.DataType = enum.Enum("DataType", "FLOAT HALF INT32 INT64 BOOL")
        self.ErrorCode = enum.Enum("ErrorCode", "SUCCESS INTERNAL_ERROR UNSUPPORTED_NODE INVALID_NODE")

        class IProgressMonitor:
            def __init__(self):
                pass

        self.IProgressMonitor = IProgressMonitor

        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

        self.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

        class Tensor:
            def __init__(self, name, dtype):
                self.name, self.dtype = name, dtype

        class Network:
            def __init__(self):
                self.inputs: list[Tensor] = []

            @property
            def num_inputs(self):
                return len(self.inputs)

            def get_input(self, index):
                return self.inputs[index]

        class ParserError:
            def __init__(self, node, op, desc, code):
                self._node, self._op, self._desc, self._code = node, op, desc, code

            def node_name(self):
                return self._node

            def node_operator(self):
                return self._op

            def desc(self):
                return self._desc

            def code(self):
                return fake.ErrorCode[self._code]

        class OnnxParser:
            def __init__(self, network, logger):
                self.network, self.logger = network, logger

            def parse_from_file(self, model):
                fake.calls.append(("parse_from_file", model))
                proto = onnx.load(model, load_external_data=False)
                types_ = {TensorProto.FLOAT: fake.DataType.FLOAT, TensorProto.INT64: fake.DataType.INT64}
                self.network.inputs = [Tensor(i.name, types_[i.type.tensor_type.elem_type]) for i in proto.graph.input]
                return not parse_errors

            @property
            def num_errors(self):
                return len(parse_errors)

            def get_error(self, index):
                return ParserError(*parse_errors[index])

        self.OnnxParser = OnnxParser

        class Profile:
            def set_shape(self, input, min, opt, max):
                fake.calls.append(("set_shape", input, tuple(min), tuple(opt), tuple(max)))

        class TimingCache:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return memoryview(self.data + b"+tuned")

        class Config:
            def __init__(self):
                self.progress_monitor = None
                self.int8_calibrator = None
                self.cache = None

            def set_memory_pool_limit(self, pool, pool_size):
                fake.calls.append(("set_memory_pool_limit", pool.name, pool_size))

            def add_optimization_profile(self, profile):
                fake.calls.append(("add_optimization_profile",))
                return 0

            def set_flag(self, flag):
                fake.calls.append(("set_flag", flag.name))

            def set_calibration_profile(self, profile):
                fake.calls.append(("set_calibration_profile",))

            def create_timing_cache(self, serialized_timing_cache):
                fake.calls.append(("create_timing_cache", bytes(serialized_timing_cache)))
                return TimingCache(serialized_timing_cache)

            def set_timing_cache(self, cache, ignore_mismatch):
                fake.calls.append(("set_timing_cache", ignore_mismatch))
                fits = timing_cache_fits or not cache.data
                if fits:
                    self.cache = cache
                return fits

            def get_timing_cache(self):
                return self.cache

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags=0):
                fake.calls.append(("create_network", flags))
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                fake.calls.append(("build_serialized_network",))
                monitor = config.progress_monitor
                if monitor is not None:
                    monitor.phase_start("Building engine", None, 2)
                    for step in range(2):
                        if not monitor.step_complete("Building engine", step):
                            monitor.phase_finish("Building engine")
                            return None
                    monitor.phase_finish("Building engine")
                if build_fails:
                    self.logger.log(fake.ILogger.Severity.ERROR, "out of memory while building")
                    return None
                return memoryview(b"FAKE-ENGINE")

        self.Builder = Builder

    def init_libnvinfer_plugins(self, logger, namespace):
        self.calls.append(("init_libnvinfer_plugins", namespace))
        return True

    def get_plugin_registry(self):
        return self.registry
