"""TensorRT backend: a loader that checks and deserialises an engine, a runner for preprocessed batches.

TensorRT 10 tensor API throughout (none of its names are among 11.x's removals: weak typing, calibration,
engine memory-size properties), so 10.x and 11.x share this code: I/O tensors by name (``num_io_tensors``,
``get_tensor_name``, ``get_tensor_mode``), ``set_input_shape`` + ``set_tensor_address`` and ``execute_async_v3`` on a
CUDA stream that torch owns. Device buffers are torch CUDA tensors (no pycuda). Our outputs have a
data-dependent length (detections after NMS), so every output gets an ``IOutputAllocator`` that
TensorRT asks for memory once the size is known.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from instseg_deploy.errors import InstsegError
from instseg_deploy.model_file.sidecar import read_sidecar
from instseg_deploy.processing.batching import fill_batch
from instseg_deploy.processing.preprocess import Batch
from instseg_deploy.runtime.runner import RawDetections
from instseg_deploy.runtime.trt.profiles import IMAGE_INPUT, ShapeRange
from instseg_deploy.runtime.trt.sidecar import check_sidecar, current_device_info
from instseg_deploy.runtime.trt.util import device_index, import_tensorrt, make_logger, torch_dtype


def fit_to_profile(batch: Batch, image_range: ShapeRange, pixel_mean: tuple[float, float, float],
                   input_names: list[str]) -> dict[str, np.ndarray]:
    """Feeds for one run, grown to the profile's minimum batch and size where needed.

    Filler images are blank (see ``processing.batching``); their detections are dropped by batch
    index afterwards. A batch larger than the profile allows is an error with the fix (the
    predictor already splits by max_batch).
    """
    n, _, h, w = batch.images.shape
    max_n, _, max_h, max_w = image_range.max
    min_n, _, min_h, min_w = image_range.min
    if n > max_n or h > max_h or w > max_w:
        raise InstsegError(f"the batch needs {n}x3x{h}x{w} but the engine accepts at most {max_n}x3x{max_h}x{max_w}; "
                           "rebuild it with a larger --max-shape (or --size/--batch)")
    feeds, _ = fill_batch(batch, pixel_mean, input_names, batch_size=min_n, size=(min_h, min_w))
    return feeds


def make_output_allocator(trt, device):
    """trt.IOutputAllocator handing out torch CUDA memory, grown only when an output needs more."""
    import torch

    class TorchOutputAllocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, tuple[torch.Tensor, int]] = {}  # name -> (uint8 buffer, aligned offset)
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.error: BaseException | None = None

        def reallocate_output(self, tensor_name, memory, size, alignment):
            return self._allocate(tensor_name, int(size), int(alignment))

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self._allocate(tensor_name, int(size), int(alignment))  # torch allocates on the current stream

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(int(d) for d in shape)

        def _allocate(self, name: str, size: int, alignment: int) -> int:
            try:
                alignment = max(alignment, 256)  # also keeps typed views of the buffer aligned
                held = self.buffers.get(name)
                if held is None or held[0].numel() - held[1] < size:
                    buffer = torch.empty(max(size, 1) + alignment, dtype=torch.uint8, device=device)
                    held = (buffer, (-buffer.data_ptr()) % alignment)
                    self.buffers[name] = held
                return held[0].data_ptr() + held[1]
            except BaseException as e:  # noqa: BLE001 -- TensorRT's bindings swallow it; reported after the run
                self.error = e
                return 0

        def tensor(self, name: str, dtype, shape: tuple[int, ...]) -> torch.Tensor:
            if math.prod(shape) == 0:
                return torch.empty(shape, dtype=dtype, device=device)
            buffer, offset = self.buffers[name]
            nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
            return buffer[offset:offset + nbytes].view(dtype).reshape(shape)

    return TorchOutputAllocator()


class TrtRunner:
    """Runs preprocessed batches through one execution context on a torch-owned CUDA stream."""

    name = "trt"

    def __init__(self, trt, engine, meta: dict[str, Any], device: int = 0, cuda_graph: bool = False,
                 keep_alive: tuple = ()):
        import torch

        self.trt = trt
        self.engine = engine
        self.meta = meta
        self.keep_alive = keep_alive  # runtime and logger must outlive the engine
        self.device = torch.device("cuda", device)
        self.context = engine.create_execution_context()
        if self.context is None:
            raise InstsegError("TensorRT could not create an execution context (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.dtypes = {n: torch_dtype(engine.get_tensor_dtype(n)) for n in names}
        low, opt, high = (tuple(int(d) for d in s) for s in engine.get_tensor_profile_shape(IMAGE_INPUT, 0))
        self.image_range = ShapeRange(low, opt, high)
        self.max_batch = high[0]
        self.pad_to = high[2:] if low[2:] == high[2:] else None  # a fixed-size engine
        self.pixel_mean = tuple(meta["preprocess"]["pixel_mean"])
        self.stream = torch.cuda.Stream(self.device)
        self.allocator = make_output_allocator(trt, self.device)
        for name in self.output_names:
            self.context.set_output_allocator(name, self.allocator)
        self.cuda_graph = cuda_graph
        self.graph = None  # (input shapes, CUDAGraph, static inputs, static outputs)

    def run(self, batch: Batch) -> RawDetections:
        import torch

        n = batch.images.shape[0]
        arrays = fit_to_profile(batch, self.image_range, self.pixel_mean, self.input_names)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            feeds = {name: torch.from_numpy(np.ascontiguousarray(a)).to(self.device, dtype=self.dtypes[name])
                     for name, a in arrays.items()}
            for name, tensor in feeds.items():
                if not self.context.set_input_shape(name, tuple(tensor.shape)):
                    raise InstsegError(f"TensorRT rejected the input shape {tuple(tensor.shape)} for {name}")
                self.context.set_tensor_address(name, tensor.data_ptr())
            outputs = self._run_graph(feeds) if self.cuda_graph else None
            if outputs is None:
                outputs = self._execute()
            host = {name: t.cpu().numpy() for name, t in outputs.items()}  # waits for the stream
        return RawDetections.from_graph_outputs(host, n)

    def _execute(self):
        """One execute_async_v3; outputs come from the allocator at the shapes TensorRT reported."""
        self.allocator.shapes.clear()
        self.allocator.error = None
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            cause = f": {self.allocator.error}" if self.allocator.error is not None else " (see the TensorRT log above)"
            raise InstsegError(f"TensorRT inference failed{cause}")
        self.stream.synchronize()  # shapes of data-dependent outputs are final once the work is done
        shapes = {name: self.allocator.shapes.get(name) or tuple(self.context.get_tensor_shape(name))
                  for name in self.output_names}
        return {name: self.allocator.tensor(name, self.dtypes[name], shapes[name]) for name in self.output_names}

    def _run_graph(self, feeds):
        """CUDA-graph replay for engines whose outputs have static shapes (None: run normally).

        Our detectors' outputs are data-dependent (NMS), which stream capture cannot record, so
        for them this says so once and turns itself off; engines with static outputs are
        captured per input shape, as trtexec --useCudaGraph does.
        """
        import torch

        shapes = {name: tuple(int(d) for d in self.context.get_tensor_shape(name)) for name in self.output_names}
        dynamic = [name for name, s in shapes.items() if -1 in s]
        if dynamic:
            warnings.warn(f"CUDA graphs need static output shapes; this engine's outputs {', '.join(dynamic)} are "
                          "data-dependent, so it runs without a graph", stacklevel=2)
            self.cuda_graph = False
            return None
        key = {name: tuple(t.shape) for name, t in feeds.items()}
        if self.graph is None or self.graph[0] != key:
            static_in = {name: t.clone() for name, t in feeds.items()}
            static_out = {name: torch.empty(s, dtype=self.dtypes[name], device=self.device)
                          for name, s in shapes.items()}
            for name, t in static_in.items():
                self.context.set_tensor_address(name, t.data_ptr())
            for name, t in static_out.items():
                self.context.set_output_allocator(name, None)
                self.context.set_tensor_address(name, t.data_ptr())
            self.context.execute_async_v3(self.stream.cuda_stream)  # warm-up: lazy allocations happen outside capture
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, stream=self.stream):
                    captured = self.context.execute_async_v3(self.stream.cuda_stream)
            except RuntimeError as e:
                captured, reason = False, str(e).splitlines()[0]
            else:
                reason = "execute_async_v3 failed while capturing"
            if not captured:
                warnings.warn(f"CUDA graph capture failed ({reason}); running without a graph", stacklevel=2)
                self.cuda_graph = False
                for name in self.output_names:
                    self.context.set_output_allocator(name, self.allocator)
                for name, t in feeds.items():
                    self.context.set_tensor_address(name, t.data_ptr())
                return None
            self.graph = (key, graph, static_in, static_out)
        _, graph, static_in, static_out = self.graph
        for name, t in feeds.items():
            static_in[name].copy_(t)
        graph.replay()
        return static_out


def load_trt_runner(path: str | Path, plugin_lib: str | Path | None = None, device: str = "cuda",
                    cuda_graph: bool = False) -> TrtRunner:
    """Check the engine's sidecar against this machine, load the plugin library, deserialise.

    The checks (TensorRT version, compute capability, engine hash) run before TensorRT sees the
    engine, so a mismatch is a clear one-line refusal rather than a crash inside TensorRT. The plugin
    library is ``plugin_lib``, ``$INSTSEG_PLUGIN_LIB``, or the one the sidecar names where
    ``find_plugin_library`` allows it (our build, or a copy next to the engine with the recorded SHA-256).
    """
    import torch

    from instseg_deploy.runtime.trt.plugin_library import find_plugin_library, load_plugin_library, recorded_library

    path = Path(path)
    sidecar = read_sidecar(path)
    trt = import_tensorrt()  # refuses a TensorRT major we do not follow
    index = device_index(device)
    for message in check_sidecar(sidecar, path, trt.__version__, current_device_info(index)):
        warnings.warn(message, stacklevel=2)
    plugin = sidecar.get("plugin_library")
    if (isinstance(plugin, dict) and plugin.get("required")) or plugin_lib is not None:
        load_plugin_library(trt, find_plugin_library(plugin_lib, recorded=recorded_library(sidecar, path)))
    logger = make_logger(trt)
    trt.init_libnvinfer_plugins(logger, "")
    runtime = trt.Runtime(logger)
    with torch.cuda.device(index):
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            last = logger.errors[-1] if logger.errors else "see the TensorRT log above"
            raise InstsegError(f"TensorRT could not deserialize {path}: {last}")
        return TrtRunner(trt, engine, sidecar["metadata"], index, cuda_graph, keep_alive=(runtime, logger))
