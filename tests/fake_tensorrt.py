"""A stand-in for the ``tensorrt`` module that records what our code asks TensorRT 10 or 11 for.

It checks *our* calls only (which profiles, flags, caches and calibrator our code hands the
builder, and how failures are reported); it proves nothing about TensorRT. Instead of a call log
it keeps the state TensorRT would build from: each ``build_serialized_network`` records a
snapshot of the network and builder config at that moment (``fake.builds``), so tests assert on
what matters (profile shapes per input, flags, the timing cache) and not on call order. Only the
names our code uses exist, spelled and shaped like TensorRT 10's Python bindings (checked
against the bindings' sources). The version picks the flavour: an 11.x fake lacks what NVIDIA's
10.x -> 11.x migration guide lists as removed (:data:`REMOVED_IN_11`), so touching one raises
AttributeError as the real module would, and its networks are always strongly typed.
"""

from __future__ import annotations

import enum
import types
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto

from instseg_deploy.ops.roi_align_contract import OP_TYPE, PLUGIN_NAMESPACE, PLUGIN_VERSION

Shapes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max)

# The weak-typing names our code could reach that TensorRT 11 removed: (where, name).
REMOVED_IN_11 = (("BuilderFlag", "FP16"), ("BuilderFlag", "BF16"), ("BuilderFlag", "INT8"), ("BuilderFlag", "FP8"),
                 ("BuilderFlag", "OBEY_PRECISION_CONSTRAINTS"), ("BuilderFlag", "PREFER_PRECISION_CONSTRAINTS"),
                 ("BuilderFlag", "DIRECT_IO"), ("config", "int8_calibrator"), ("config", "set_calibration_profile"),
                 ("builder", "platform_has_fast_fp16"), ("builder", "platform_has_fast_int8"),
                 ("module", "IInt8EntropyCalibrator2"))


@dataclass
class BuildSnapshot:
    """What one build_serialized_network call was given."""

    onnx_path: str
    plugin_registered_at_parse: bool  # our plugin creator was in the registry when the ONNX was parsed
    flags: set[str]
    memory_limits: dict[str, int]
    profiles: list[dict[str, Shapes]]
    calibration_profile: dict[str, Shapes] | None
    calibrator_batch_size: int | None
    timing_cache: bytes | None  # the cache the build starts from (None: no cache set)
    progress_monitor: bool = field(default=False)
    strongly_typed: bool = False  # the network's typing mode
    weight_types: frozenset[str] = frozenset()  # TensorProto type names of the parsed ONNX's initializers


class FakeRegistry:
    """trt.IPluginRegistry's get_creator / load_library, with scripted outcomes."""

    def __init__(self, registered=False, load_ok=True, registers=True):
        self.registered, self.load_ok, self.registers = registered, load_ok, registers
        self.loaded: list[str] = []

    def get_creator(self, type, version, plugin_namespace=""):
        assert (type, version, plugin_namespace) == (OP_TYPE, PLUGIN_VERSION, PLUGIN_NAMESPACE)
        return object() if self.registered else None

    def load_library(self, plugin_path):
        self.loaded.append(plugin_path)
        if not self.load_ok:
            return None
        self.registered = self.registers
        return object()


class FakeTensorRT(types.ModuleType):
    """Records what our code asks TensorRT 10 or 11 for. A test of our calls, never of TensorRT.

    Only the names our code uses exist here, with the signatures of TensorRT 10's Python
    bindings, less :data:`REMOVED_IN_11` when ``version`` is 11.x; ``parse_errors`` / ``build_fails`` /
    ``flags`` / ``timing_cache_fits`` script the failure cases. ``builds``: one :class:`BuildSnapshot`
    per build; ``plugin_namespaces``: the namespaces ``init_libnvinfer_plugins`` was called with.
    """

    def __init__(self, version="10.3.0", parse_errors=(), build_fails=False, flags=None,
                 timing_cache_fits=True):
        super().__init__("tensorrt")
        fake = self
        self.__version__ = version
        weak = int(version.split(".")[0]) < 11  # 10.x: weakly typed, with the precision flags and calibrator
        if flags is None:
            flags = ("FP16", "INT8") if weak else ("REFIT",)  # 11.x: none of the precision flags
        assert weak or not {name for where, name in REMOVED_IN_11 if where == "BuilderFlag"} & set(flags)
        self.builds: list[BuildSnapshot] = []
        self.plugin_namespaces: list[str] = []
        self.network_flags: list[int] = []
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

        if weak:
            self.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

        class Tensor:
            def __init__(self, name, dtype):
                self.name, self.dtype = name, dtype

        class Network:
            def __init__(self, strongly_typed):
                self.inputs: list[Tensor] = []
                self.parsed: tuple[str, bool] | None = None  # (path, plugin registered then)
                self.strongly_typed = strongly_typed
                self.weight_types: frozenset[str] = frozenset()

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
                self.network.parsed = (model, fake.registry.registered)
                proto = onnx.load(model, load_external_data=False)
                self.network.weight_types = frozenset(TensorProto.DataType.Name(t.data_type)
                                                      for t in proto.graph.initializer)
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
            def __init__(self):
                self.shapes: dict[str, Shapes] = {}

            def set_shape(self, input, min, opt, max):
                self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

        class TimingCache:
            def __init__(self, data):
                self.data = bytes(data)

            def serialize(self):
                return memoryview(self.data + b"+tuned")

        class Config:
            # slots: assigning a name the config does not have fails, as on the bindings' objects
            __slots__ = ("progress_monitor", "calibrator", "cache", "flags", "memory_limits", "profiles",
                         "calibration_profile")

            def __init__(self):
                self.progress_monitor = None
                self.calibrator = None
                self.cache = None
                self.flags: set[str] = set()
                self.memory_limits: dict[str, int] = {}
                self.profiles: list[Profile] = []
                self.calibration_profile: Profile | None = None

            def set_memory_pool_limit(self, pool, pool_size):
                self.memory_limits[pool.name] = pool_size

            def add_optimization_profile(self, profile):
                self.profiles.append(profile)
                return len(self.profiles) - 1

            def set_flag(self, flag):
                self.flags.add(flag.name)

            def create_timing_cache(self, serialized_timing_cache):
                return TimingCache(serialized_timing_cache)

            def set_timing_cache(self, cache, ignore_mismatch):
                assert ignore_mismatch is False, "a cache from another device must be refused, not used"
                fits = timing_cache_fits or not cache.data
                if fits:
                    self.cache = cache
                return fits

            def get_timing_cache(self):
                return self.cache

        class WeakConfig(Config):
            """10.x's config: implicit INT8 calibration (gone in 11.x)."""

            __slots__ = ()

            @property
            def int8_calibrator(self):
                return self.calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, calibrator):
                self.calibrator = calibrator

            def set_calibration_profile(self, profile):
                self.calibration_profile = profile

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags=0):
                fake.network_flags.append(flags)
                return Network(strongly_typed=not weak)  # 10.x: only with a flag our code never passes

            def create_builder_config(self):
                return WeakConfig() if weak else Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                calibrator = config.calibrator
                fake.builds.append(BuildSnapshot(
                    network.parsed[0], network.parsed[1], set(config.flags), dict(config.memory_limits),
                    [dict(p.shapes) for p in config.profiles],
                    None if config.calibration_profile is None else dict(config.calibration_profile.shapes),
                    None if calibrator is None else calibrator.get_batch_size(),
                    None if config.cache is None else config.cache.data, config.progress_monitor is not None,
                    network.strongly_typed, network.weight_types))
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

        class WeakBuilder(Builder):
            """10.x's builder: the platform queries 11.x removed."""

            platform_has_fast_fp16 = True
            platform_has_fast_int8 = True

        self.Builder = WeakBuilder if weak else Builder

    def init_libnvinfer_plugins(self, logger, namespace):
        self.plugin_namespaces.append(namespace)
        return True

    def get_plugin_registry(self):
        return self.registry
