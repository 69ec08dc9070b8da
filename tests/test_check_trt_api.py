"""plugins/scripts/check_trt_api.py's reading of pybind11 binding sources, on an inline snippet.

The script itself needs a TensorRT OSS clone and is not run here; this tests only its regexes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "plugins" / "scripts" / "check_trt_api.py"
spec = importlib.util.spec_from_file_location("check_trt_api", SCRIPT)
check_trt_api = importlib.util.module_from_spec(spec)
sys.modules.setdefault("check_trt_api", check_trt_api)  # its dataclasses look their module up
spec.loader.exec_module(check_trt_api)

SNIPPET = r'''
class PyLogger : public ILogger {
    void log(Severity severity, const char* msg) noexcept override {
        PYBIND11_OVERLOAD_PURE_NAME(void, ILogger, "log", log, severity, msg);
    }
};
void bindCore(py::module& m) {
    py::class_<ILogger, PyLogger> baseLoggerBinding{m, "ILogger", ILoggerDoc::descr, py::module_local()};
    py::enum_<ILogger::Severity>(
        baseLoggerBinding, "Severity", py::arithmetic(), SeverityDoc::descr, py::module_local())
        .value("ERROR", ILogger::Severity::kERROR, SeverityDoc::ERROR)
        .value("WARNING", ILogger::Severity::kWARNING);
    baseLoggerBinding.def(py::init<>()).def("log", &ILogger::log, "severity"_a, "msg"_a);

    py::enum_<BuilderFlag>(m, "BuilderFlag", py::arithmetic{}, BuilderFlagDoc::descr, py::module_local())
        .value("REFIT", BuilderFlag::kREFIT, BuilderFlagDoc::REFIT)
        // .value("FP16", BuilderFlag::kFP16),  a comment registers nothing
        .value("TF32", BuilderFlag::kTF32);

    py::class_<IBuilderConfig>(m, "IBuilderConfig", IBuilderConfigDoc::descr, py::module_local())
        .def_property("progress_monitor", &IBuilderConfig::getProgressMonitor,
            py::cpp_function(&IBuilderConfig::setProgressMonitor, py::keep_alive<1, 2>{}))
        .def("set_flag", &IBuilderConfig::setFlag, "flag"_a, IBuilderConfigDoc::set_flag)
        .def_readwrite("dla_core", &IBuilderConfig::dla);
    py::class_<ITensor, std::unique_ptr<ITensor, py::nodelete>>(m, "ITensor", ITensorDoc::descr, py::module_local())
        .def_property_readonly("name", &ITensor::getName);
    py::class_<IInt8EntropyCalibrator2, IInt8Calibrator, pyCalibratorTrampoline<IInt8EntropyCalibrator2>>(
        m, "IInt8EntropyCalibrator2", py::module_local())
        .def(py::init<>());
    py::class_<IInt8Calibrator, pyIInt8Calibrator>(m, "IInt8Calibrator", py::module_local())
        .def("get_batch_size", &IInt8Calibrator::getBatchSize);
    m.def(
        "get_plugin_registry", &getPluginRegistry, py::return_value_policy::reference);
    m.def("init_libnvinfer_plugins", &initLibNvInferPlugins, "logger"_a, "namespace"_a);
}
'''
OTHER_FILE = r'''
py::function f = utils::getOverride(static_cast<IOutputAllocator*>(this), "reallocate_output_async", false);
py::class_<IOutputAllocator, PyOutputAllocator>(m, "IOutputAllocator", py::module_local()).def(py::init<>());
'''


def test_binding_names_are_read_per_class():
    b = check_trt_api.extract_bindings([SNIPPET, OTHER_FILE])
    module = check_trt_api.MODULE
    for owner, name in ((module, "ILogger"), ("ILogger", "Severity"), ("Severity", "ERROR"), ("Severity", "WARNING"),
                        ("ILogger", "log"), ("ILogger", "__init__"), (module, "BuilderFlag"), ("BuilderFlag", "REFIT"),
                        ("BuilderFlag", "TF32"), ("IBuilderConfig", "progress_monitor"), ("IBuilderConfig", "set_flag"),
                        ("IBuilderConfig", "dla_core"), (module, "ITensor"), ("ITensor", "name"),
                        (module, "IInt8EntropyCalibrator2"), ("IInt8EntropyCalibrator2", "get_batch_size"),
                        ("IInt8EntropyCalibrator2", "__init__"), (module, "get_plugin_registry"),
                        (module, "init_libnvinfer_plugins"), ("IOutputAllocator", "reallocate_output_async"),
                        ("IOutputAllocator", "__init__")):
        assert b.has(owner, name), (owner, name)
    for owner, name in (("BuilderFlag", "FP16"), (module, "Severity"), ("IBuilderConfig", "log"),
                        ("ITensor", "set_flag"), ("BuilderFlag", "ERROR"), ("IBuilderConfig", "__init__")):
        assert not b.has(owner, name), (owner, name)
    assert b.anywhere("set_flag") == ["IBuilderConfig"]


def test_extra_names_take_a_major():
    extra = check_trt_api.parse_extra(["11:BuilderFlag.FP16", "Runtime"])
    assert extra == {"10": {("", "Runtime")}, "11": {("BuilderFlag", "FP16"), ("", "Runtime")}}
