#!/usr/bin/env python3
"""Check the TensorRT Python names our code uses against the bindings' sources of a 10.x and an 11.x release.

A maintainer's tool, not run by the tests (it needs a TensorRT OSS git clone). Usage::

    python plugins/scripts/check_trt_api.py --repo /path/to/TensorRT/.git --v10 v10.16 --v11 v11.1

``--repo`` is a clone (or bare git dir) of https://github.com/NVIDIA/TensorRT with its tags
(``git clone https://github.com/NVIDIA/TensorRT``); nothing is checked out, the sources are read with
``git show TAG:python/src/...``. A name exists in a release if its pybind11 sources register it
(``py::class_<...>(m, "Name"``, ``py::enum_``, ``.def("name"``, ``.def_property*``, ``.def_readwrite``,
``.value("NAME"``, module-level ``m.def("name"``, or a trampoline's override name such as
``PYBIND11_OVERLOAD_PURE_NAME(..., "log", ...)``), looked up on the class that registers it or one of
its bases.

What is checked, per flavour:

1. every name ``tests/fake_tensorrt.py`` defines in its 10.x flavour against the 10.x sources, and in
   its 11.x flavour against the 11.x sources (the tests run our builder against each flavour, and the
   fake raises AttributeError for what it lacks, so its names are a superset of what that path touches);
2. the runner's engine/context calls (the fake does not model deserialisation; :data:`RUNNER_NAMES`)
   against both;
3. every ``trt.<Name>...`` attribute chain in ``instseg_deploy/`` (ast), and the methods of our
   subclasses of ``trt.<Class>`` (the overrides TensorRT calls back), against both; names found in only
   one release are listed (fine when that path is only taken on that major, e.g. the 10.x calibrator);
4. ``--extra-name [10:|11:]Owner.member`` (repeatable), e.g. ``--extra-name 11:BuilderFlag.FP16``.

Prints every missing name and exits 1 if any is missing (2 for a usage problem).
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPO = Path("/work/.mirror/NVIDIA+TensorRT/repo")
BINDING_DIRS = ("python/src/infer", "python/src/parsers")
PACKAGE_INIT = "python/packaging/bindings_wheel/tensorrt/__init__.py"
FAKE_VERSIONS = {"10": "10.3.0", "11": "11.1.0"}  # tests/test_trt_versions.py's V10, V11
MODULE = ""  # owner of module-level names

# The fake's classes are local to FakeTensorRT.__init__ and named for what they stand for; their
# names in the bindings:
FAKE_CLASS_TO_BINDING = {"Builder": "Builder", "WeakBuilder": "Builder", "Config": "IBuilderConfig",
                         "WeakConfig": "IBuilderConfig", "Network": "INetworkDefinition",
                         "Profile": "IOptimizationProfile", "TimingCache": "ITimingCache", "OnnxParser": "OnnxParser",
                         "ParserError": "ParserError", "Tensor": "ITensor", "FakeRegistry": "IPluginRegistry"}
# State the fake keeps for the tests' assertions, not names of TensorRT (binding name -> attributes).
FAKE_INTERNAL = {MODULE: {"builds", "plugin_namespaces", "network_flags", "registry"},
                 "INetworkDefinition": {"inputs", "parsed", "strongly_typed", "weight_types"},
                 "IBuilderConfig": {"calibrator", "cache", "flags", "memory_limits", "profiles", "calibration_profile"},
                 "IOptimizationProfile": {"shapes"}, "ITimingCache": {"data"},
                 "IPluginRegistry": {"registered", "load_ok", "registers", "loaded"},
                 "OnnxParser": {"network", "logger"}, "Builder": {"logger"}}
# What instseg_deploy/runtime/trt/runner.py calls on objects the fake does not model (deserialised
# engines); keep in step with that file, or better, give the fake a Runtime and drop this list.
RUNNER_NAMES = (("", "Runtime"), ("Runtime", "deserialize_cuda_engine"), ("ICudaEngine", "create_execution_context"),
                ("ICudaEngine", "num_io_tensors"), ("ICudaEngine", "get_tensor_name"),
                ("ICudaEngine", "get_tensor_mode"), ("ICudaEngine", "get_tensor_dtype"),
                ("ICudaEngine", "get_tensor_profile_shape"), ("IExecutionContext", "set_output_allocator"),
                ("IExecutionContext", "set_input_shape"), ("IExecutionContext", "set_tensor_address"),
                ("IExecutionContext", "execute_async_v3"), ("IExecutionContext", "get_tensor_shape"),
                ("", "IOutputAllocator"), ("TensorIOMode", "INPUT"), ("TensorIOMode", "OUTPUT"))

# ----------------------------------------------------------------------------- the bindings' sources

_TEMPLATE = r"<((?:[^<>]|<(?:[^<>]|<[^<>]*>)*>)*)>"  # up to three levels of nested <...>
_REGISTER = re.compile(
    r"py::(class_|enum_)\s*" + _TEMPLATE + r"\s*(\w+)?\s*[({]\s*(\w+)\s*,\s*\"(\w+)\"")
_MEMBER = re.compile(r"\.\s*(?:def|def_static|def_property|def_property_readonly|def_readwrite|"
                                   r"def_readonly|def_property_static|def_property_readonly_static|value)"
                                   r"\s*\(\s*\"(\w+)\"")
_MODULE_DEF = re.compile(r"\b(\w+)\s*\.\s*(?:def|attr)\s*\(\s*\"(\w+)\"")
_INIT = re.compile(r"\.\s*def\s*\(\s*py::init\b")
_PY_TOPLEVEL = re.compile(r"^(?:def\s+(\w+)|(\w+)\s*=)", re.M)  # the package's __init__.py: __version__, ...
_OVERRIDE = re.compile(
    r"PYBIND11_OVERLOAD(?:_PURE)?_NAME\s*\(\s*[^,]+,\s*(\w+)\s*,\s*\"(\w+)\""
    r"|PYBIND11_OVERRIDE(?:_PURE)?_NAME\s*\(\s*[^,]+,\s*(\w+)\s*,\s*\"(\w+)\""
    r"|getOverride\s*\(\s*static_cast\s*<\s*(?:const\s+)?(\w+)\s*\*\s*>\s*\(\s*this\s*\)\s*,\s*\"(\w+)\"")


def _strip_comments(src: str) -> str:
    """C++ source without // and /* */ comments (string literals kept, so their names still count)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        elif src.startswith("//", i):
            i = src.find("\n", i)
            i = n if i < 0 else i
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _statement_end(src: str, start: int) -> int:
    """Index of the ';' ending the statement at ``start`` (brackets balanced, strings skipped)."""
    depth, i, n = 0, start, len(src)
    while i < n:
        c = src[i]
        if c == '"' or c == "'":
            i += 1
            while i < n and src[i] != c:
                i += 2 if src[i] == "\\" else 1
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == ";" and depth <= 0:
            return i
        i += 1
    return n


def _split_template(args: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for c in args:
        depth += c == "<"
        depth -= c == ">"
        if c == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += c
    parts.append(cur.strip())
    return [p for p in parts if p]


@dataclass
class Bindings:
    """Names a release's pybind11 sources register: members per Python class, classes' bases."""

    members: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    bases: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    cpp_to_py: dict[str, str] = field(default_factory=dict)

    def has(self, owner: str, name: str) -> bool:
        seen, todo = set(), [owner]
        while todo:
            cls = todo.pop()
            if cls in seen:
                continue
            seen.add(cls)
            if name in self.members.get(cls, ()):
                return True
            todo.extend(self.bases.get(cls, ()))
        return False

    def anywhere(self, name: str) -> list[str]:
        return sorted(cls or "<module>" for cls, names in self.members.items() if name in names)


def extract_bindings(sources: list[str]) -> Bindings:
    """Parse pybind11 binding sources (C++ text) into :class:`Bindings`."""
    b = Bindings()
    texts = [_strip_comments(s) for s in sources]
    registrations = []  # (text, match, py name, scope variable)
    for text in texts:
        for m in _REGISTER.finditer(text):
            _, targs, var, scope, py_name = m.groups()
            cpp = _split_template(targs)
            b.cpp_to_py.setdefault(cpp[0].split("::")[-1], py_name)
            registrations.append((text, m, py_name, var, scope, cpp))
    variables = {}  # binding variable -> Python class it holds
    for *_, py_name, var, _scope, _cpp in registrations:
        if var:
            variables[var] = py_name
    module_vars = {"m"}
    for text, m, py_name, _var, scope, cpp in registrations:
        owner = variables.get(scope, MODULE) if scope not in module_vars else MODULE
        b.members[owner].add(py_name)
        b.members.setdefault(py_name, set())
        for base in cpp[1:]:
            base_cpp = base.split("::")[-1]
            if base_cpp in b.cpp_to_py and b.cpp_to_py[base_cpp] != py_name:
                b.bases[py_name].add(b.cpp_to_py[base_cpp])
        end = _statement_end(text, m.start())
        b.members[py_name].update(_MEMBER.findall(text, m.end(), end))
        if _INIT.search(text, m.end(), end):
            b.members[py_name].add("__init__")
    for text in texts:
        for m in _MODULE_DEF.finditer(text):
            var, name = m.groups()
            if var in module_vars:
                b.members[MODULE].add(name)
        for m in re.finditer(r"\b(\w+)\s*\.\s*def", text):
            if m.group(1) in variables:  # e.g. baseLoggerBinding.def(py::init<>()).def("log", ...)
                end = _statement_end(text, m.start())
                b.members[variables[m.group(1)]].update(_MEMBER.findall(text, m.start(), end))
                if _INIT.search(text, m.start(), end):
                    b.members[variables[m.group(1)]].add("__init__")
        for m in _OVERRIDE.finditer(text):
            g = m.groups()
            cpp, name = next((g[i], g[i + 1]) for i in (0, 2, 4) if g[i])
            b.members[b.cpp_to_py.get(cpp, cpp)].add(name)
    return b


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def release_bindings(repo: Path, tag: str) -> tuple[Bindings, list[str]]:
    files = [f for f in _git(repo, "ls-tree", "-r", "--name-only", tag, "--", *BINDING_DIRS).splitlines()
             if f.endswith(".cpp")]
    if not files:
        raise SystemExit(f"error: {tag} has no {' or '.join(BINDING_DIRS)}/*.cpp in {repo}")
    bindings = extract_bindings([_git(repo, "show", f"{tag}:{f}") for f in files])
    try:  # module-level names the Python package adds (__version__, helpers)
        init = _git(repo, "show", f"{tag}:{PACKAGE_INIT}")
    except subprocess.CalledProcessError:
        init = ""
    else:
        files.append(PACKAGE_INIT)
    bindings.members[MODULE].update(a or b for a, b in _PY_TOPLEVEL.findall(init))
    return bindings, files

# ----------------------------------------------------------------------------- what the fake defines


def _public_class_names(cls) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__ == "builtins" or klass.__name__ == "ModuleType":
            continue
        names.update(n for n in vars(klass) if not n.startswith("_"))
        names.update(n for n in getattr(klass, "__slots__", ()) if not n.startswith("_"))
    return names


def fake_names(version: str) -> set[tuple[str, str]]:
    """(binding owner, name) for every name the fake of ``version`` defines."""
    import enum
    import types

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        import onnx
        from onnx import TensorProto, helper

        from fake_tensorrt import FakeTensorRT
    finally:
        sys.path.remove(str(ROOT / "tests"))
    names: set[tuple[str, str]] = set()

    def add_enum(py_name, enum_cls):
        names.update((py_name, member) for member in enum_cls.__members__)

    def add_class(owner, cls):
        for attr in _public_class_names(cls):
            value = getattr(cls, attr, None)
            names.add((owner, attr))
            if isinstance(value, type) and issubclass(value, enum.Enum):
                add_enum(attr, value)

    def add_instance(obj):
        owner = FAKE_CLASS_TO_BINDING.get(type(obj).__name__)
        if owner is None:
            raise SystemExit(f"error: the fake's class {type(obj).__name__} has no binding name in "
                             "FAKE_CLASS_TO_BINDING; add it there")
        add_class(owner, type(obj))
        names.update((owner, n) for n in getattr(obj, "__dict__", {}) if not n.startswith("_"))

    fake = FakeTensorRT(version=version, parse_errors=(("node", "Op", "desc", "SUCCESS"),))
    for attr in set(vars(fake)) | _public_class_names(type(fake)):
        if attr.startswith("_"):
            continue
        value = getattr(fake, attr)
        names.add((MODULE, attr))
        if isinstance(value, type) and issubclass(value, enum.Enum):
            add_enum(attr, value)
        elif isinstance(value, type) and attr not in ("Builder", "OnnxParser"):
            add_class(attr, value)
        elif not isinstance(value, (type, types.MethodType)) and hasattr(value, "__dict__") and attr != "registry":
            add_instance(value)
    builder = fake.Builder(None)
    config = builder.create_builder_config()
    network = builder.create_network(0)
    parser = fake.OnnxParser(network, None)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "m.onnx"
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        onnx.save(helper.make_model(graph), str(model))
        parser.parse_from_file(str(model))
    for obj in (builder, config, network, builder.create_optimization_profile(), config.create_timing_cache(b""),
                parser, parser.get_error(0), network.get_input(0), fake.get_plugin_registry()):
        add_instance(obj)
    return {(owner, n) for owner, n in names if n not in FAKE_INTERNAL.get(owner, ())}

# ----------------------------------------------------------------------------- what instseg_deploy/ uses


def _chain(node: ast.AST) -> list[str] | None:
    """['BuilderFlag', 'FP16'] for ``trt.BuilderFlag.FP16``; None when not rooted at ``trt``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "trt" and parts:
        return parts[::-1]
    return None


def source_names(package: Path) -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str], set[str]]]:
    """((owner, name) -> files) for ``trt.X.Y`` chains, and for methods of our ``trt.X`` subclasses."""
    chains: dict[tuple[str, str], set[str]] = defaultdict(set)
    overrides: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in sorted(package.rglob("*.py")):
        rel = str(path.relative_to(package.parent))
        tree = ast.parse(path.read_text(), rel)
        inner = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and id(node) not in inner:
                parts = _chain(node)
                if parts:
                    owners = [MODULE, *parts[:-1]]
                    for owner, name in zip(owners, parts):
                        chains[(owner, name)].add(rel)
                    sub = node.value
                    while isinstance(sub, ast.Attribute):
                        inner.add(id(sub))
                        sub = sub.value
            if isinstance(node, ast.ClassDef):
                for base in node.bases:
                    parts = _chain(base)
                    if parts:
                        for item in node.body:
                            if isinstance(item, ast.FunctionDef) and not item.name.startswith("_"):
                                overrides[(parts[-1], item.name)].add(rel)
    return chains, overrides

# ----------------------------------------------------------------------------- report


def _label(owner: str, name: str) -> str:
    return f"{owner}.{name}" if owner else name


def _missing_line(bindings: Bindings, owner: str, name: str) -> str:
    elsewhere = [c for c in bindings.anywhere(name) if c != owner]
    hint = f" (registered on {', '.join(elsewhere[:4])} instead)" if elsewhere else ""
    return f"{_label(owner, name)}{hint}"


def parse_extra(values: list[str]) -> dict[str, set[tuple[str, str]]]:
    extra: dict[str, set[tuple[str, str]]] = {"10": set(), "11": set()}
    for value in values:
        majors, _, spec = value.rpartition(":")
        owner, _, name = spec.rpartition(".")
        for major in (majors.split(",") if majors else ("10", "11")):
            if major not in extra or not name:
                raise SystemExit(f"error: --extra-name {value!r}: expected [10:|11:]Owner.member or Name")
            extra[major].add((owner, name))
    return extra


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=None,
                    help=f"TensorRT OSS git dir (default: {DEFAULT_REPO} if present)")
    ap.add_argument("--v10", default="v10.16", help="the 10.x tag (default v10.16)")
    ap.add_argument("--v11", default="v11.1", help="the 11.x tag (default v11.1)")
    ap.add_argument("--extra-name", action="append", default=[], metavar="[10:|11:]Owner.member",
                    help="also check this name (for both majors unless prefixed), e.g. 11:BuilderFlag.FP16")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every name checked")
    args = ap.parse_args(argv)
    repo = args.repo or (DEFAULT_REPO if DEFAULT_REPO.exists() else None)
    if repo is None or not repo.exists():
        print("error: no TensorRT OSS git repository; clone it (git clone https://github.com/NVIDIA/TensorRT "
              "/tmp/TensorRT, tags included) and pass --repo /tmp/TensorRT", file=sys.stderr)
        return 2
    extra = parse_extra(args.extra_name)
    tags = {"10": args.v10, "11": args.v11}
    bindings = {}
    for major, tag in tags.items():
        bindings[major], files = release_bindings(repo, tag)
        n = sum(len(v) for v in bindings[major].members.values())
        print(f"TensorRT {tag}: {n} names registered by {len(files)} binding sources ({', '.join(files)})")
    failed = False

    def check(title, wanted, major, note=""):
        nonlocal failed
        b = bindings[major]
        missing = sorted(w for w in wanted if not b.has(*w))
        print(f"\n{title} against {tags[major]}: {len(wanted)} names checked, {len(missing)} missing{note}")
        if args.verbose:
            print("  checked: " + ", ".join(_label(*w) for w in sorted(wanted)))
        for owner, name in missing:
            print(f"  MISSING in {tags[major]}: {_missing_line(b, owner, name)}")
        failed |= bool(missing)

    for major, version in FAKE_VERSIONS.items():
        check(f"fake_tensorrt {version} (our {major}.x build path)", fake_names(version), major)
    for major in tags:
        check(f"runner path ({major}.x; not in the fake, RUNNER_NAMES)", set(RUNNER_NAMES), major)
        if extra[major]:
            check(f"--extra-name ({major}.x)", extra[major], major)

    chains, overrides = source_names(ROOT / "instseg_deploy")
    for title, found, fatal in (("trt.<...> chains in instseg_deploy/", chains, True),
                                ("methods of our trt.<Class> subclasses (callbacks TensorRT calls)", overrides, False)):
        print(f"\n{title}: {len(found)} names")
        for (owner, name), files in sorted(found.items()):
            present = [major for major in tags if bindings[major].has(owner, name)]
            where = ", ".join(sorted(files))
            if len(present) == 2:
                if args.verbose:
                    print(f"  both: {_label(owner, name)} ({where})")
            elif present:
                print(f"  only in {tags[present[0]]}: {_label(owner, name)} ({where})")
            else:
                kind = "MISSING in both" if fatal else "not a binding name (our own helper?)"
                print(f"  {kind}: {_label(owner, name)} ({where})")
                failed |= fatal
    print("\nFAILED: names above are missing" if failed else "\nOK: every name is registered by its release")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
