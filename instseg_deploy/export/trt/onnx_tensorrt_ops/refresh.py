"""Regenerate ``<major>.json`` from an onnx-tensorrt ``docs/operators.md`` (a maintainer's tool, not run by tests).

    git -C <onnx-tensorrt clone> show release/10.1-GA:docs/operators.md > operators.md
    python -m instseg_deploy.export.trt.onnx_tensorrt_ops.refresh operators.md --major 10 \\
        --source github.com/onnx/onnx-tensorrt --revision "release/10.1-GA (96e7811...)"

The JSON keeps the table as written (op -> {supported, types, notes}) plus the opset range of its
heading; ``AMENDMENTS`` are the few places where the same revision's importer accepts more than
its table says, each with where that was read. ``RELEASE_CHANGES`` are the parser changes that
NVIDIA's release notes list for a major after the newest table that could be read (TensorRT 11.x
has no readable table here: its JSON is the 10.15 table plus these); they are applied whenever
that major's JSON is written, or alone with ``--apply-release-changes MAJOR``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

HERE = Path(__file__).parent
# "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20."
OPSET_RANGE = re.compile(r"TensorRT\s+([0-9.]+)\s+supports operators in the inclusive range of opset\s+(\d+)\s+"
                         r"to opset\s+(\d+)", re.IGNORECASE)
# (table's op, extra types, why): the importer checks these input types itself; the table lists fewer.
AMENDMENTS: list[tuple[str, list[str], str]] = [
    ("NonZero", ["BF16", "INT32", "INT64", "INT8", "BOOL"],
     "onnxOpImporters.cpp at release/10.1-GA, DEFINE_BUILTIN_OP_IMPORTER(NonZero): accepts FLOAT32, FLOAT16, "
     "BFLOAT16, INT32, INT64, INT8 or BOOL (our graphs feed it BOOL); the 10.15 table still lists FP32, FP16"),
    ("Clip", ["INT32", "INT64"],
     "onnxOpImporters.cpp at release/10.1-GA, DEFINE_BUILTIN_OP_IMPORTER(Clip): floating-point, INT32 or INT64 "
     "inputs (integer clips become elementwise max/min); our graphs clip INT64 sizes"),
    ("DequantizeLinear", ["INT32"],
     "onnxOpImporters.cpp at release/10.1-GA, QuantDequantLinearHelper: input 0 is refused only if UINT8 "
     "(notInvalidType(inputs.at(0), {\"UINT8\"})); onnxruntime's QDQ writes INT32 biases. Parse-time only: "
     "whether the builder takes an INT32 dequantize is not in the table or the parser"),
]
# Parser changes listed by NVIDIA after the newest readable table, per TensorRT major, oldest first.
# Each sets (op -> row fields) and/or the opset range; "source" says where it was read.
_GITHUB_RELEASES = "github.com/NVIDIA/TensorRT releases (the OSS release notes)"
RELEASE_CHANGES: dict[int, list[dict]] = {
    11: [
        {"release": "11.0", "source": f"{_GITHUB_RELEASES}, v11.0: 'Parsers: Added support for Swish operator'",
         "ops": {"Swish": {"supported": True, "types": ["FP32", "FP16", "BF16"],
                           "notes": "types not listed by the release note: ONNX Swish's float types"}}},
        {"release": "11.2", "source": f"{_GITHUB_RELEASES}, v11.2: 'Added support for the DFT operator and 5D "
                                      "GridSample operators'; TensorRT 11.2.1 release notes (docs.nvidia.com): "
                                      "GridSample rank-5 input with FP32, FP16 and BF16, DFT through a cuFFT plugin",
         "ops": {"DFT": {"supported": True, "types": ["FP32"],
                         "notes": "through the FFTPlugin (cuFFT): C2C, R2C and C2R transforms"},
                 "GridSample": {"supported": True, "types": ["FP32", "FP16", "BF16"],
                                "notes": "Input must be 4D or 5D."}}},
        {"release": "11.5", "source": "github.com/onnx/onnx-tensorrt release/11.5-GA notes: 'Added support for ONNX "
                                      "opset 25' and 'Added support for Squeeze when axis input is omitted'; "
                                      "docs.nvidia.com ONNX Opset Guide: TensorRT 11.x maximum opset 25, minimum 9",
         "opset": [9, 25],
         "ops": {"Squeeze": {"supported": True, "types": ["FP32", "FP16", "BF16", "INT32", "INT64", "BOOL"],
                             "notes": "`axes`, when given, must be resolvable to a constant."}}},
    ],
}
TYPO_FIXES = {"INF64": "INT64"}  # release/10.1-GA's ConstantOfShape row


def parse_operators_md(text: str) -> dict:
    """{"tensorrt": "10.0", "opset": [9, 20], "ops": {op: {"supported", "types", "notes"}}} from operators.md."""
    header = OPSET_RANGE.search(text)
    if header is None:
        raise SystemExit("operators.md: no 'TensorRT X supports operators in the inclusive range of opset A to "
                         "opset B' heading")
    ops: dict[str, dict] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.lstrip().startswith("|") or len(cells) < 2 or cells[0] in ("Operator", "") or \
                set(cells[0]) <= set("-: "):
            continue
        supported = cells[1].split()[0].upper() == "Y" if cells[1] else False
        types = [TYPO_FIXES.get(t.strip(), t.strip()) for t in cells[2].split(",") if t.strip()] \
            if len(cells) > 2 else []
        notes = " ".join(c for c in cells[3:] if c).replace("<br />", "; ").replace("\\.", ".").strip()
        if len(cells) > 2 and not supported and types and not notes:  # "N | Not supported. ..." in the types column
            notes, types = cells[2], []
        ops[cells[0]] = {"supported": supported, "types": types, "notes": notes}
    if not ops:
        raise SystemExit("operators.md: no operator table rows")
    return {"tensorrt": header.group(1), "opset": [int(header.group(2)), int(header.group(3))], "ops": ops}


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def apply_release_changes(doc: dict, major: int) -> dict:
    """``doc`` with those of ``RELEASE_CHANGES[major]`` applied that are newer than its table (row fields
    replaced, so applying twice is the same; a real table of that release or later takes none)."""
    table_release = _release(doc.get("table_heading_tensorrt", "0"))
    changes = [c for c in RELEASE_CHANGES.get(major, []) if _release(c["release"]) > table_release]
    for change in changes:
        for op, row in change.get("ops", {}).items():
            doc["ops"][op] = dict(row)
        if "opset" in change:
            doc["opset"] = list(change["opset"])
    doc["release_changes"] = [{"release": c["release"], "source": c["source"],
                               "ops": sorted(c.get("ops", {})), "opset": c.get("opset")} for c in changes]
    return doc


def write_table(doc: dict) -> Path:
    out = HERE / f"{doc['tensorrt_major']}.json"
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(doc['ops'])} ops, opset {doc['opset'][0]}..{doc['opset'][1]}, "
          f"{len(doc.get('release_changes', []))} release changes")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators_md", type=Path, nargs="?")
    parser.add_argument("--major", type=int, help="the TensorRT major version the file is for")
    parser.add_argument("--source", help="where operators.md came from (repository or URL)")
    parser.add_argument("--revision", help="tag / commit / release it was read at")
    parser.add_argument("--note", default="", help="anything a reader of the JSON must know about the source")
    parser.add_argument("--read-on", default=datetime.date.today().isoformat(), help="date it was read")
    parser.add_argument("--apply-release-changes", type=int, metavar="MAJOR",
                        help="apply RELEASE_CHANGES[MAJOR] to the existing MAJOR.json and stop")
    args = parser.parse_args(argv)
    if args.apply_release_changes is not None:
        path = HERE / f"{args.apply_release_changes}.json"
        write_table(apply_release_changes(json.loads(path.read_text(encoding="utf-8")), args.apply_release_changes))
        return
    if args.operators_md is None or args.major is None or not args.source or not args.revision:
        parser.error("operators_md, --major, --source and --revision are required")
    table = parse_operators_md(args.operators_md.read_text(encoding="utf-8"))
    amended = []
    for op, extra, why in AMENDMENTS:
        row = table["ops"][op]
        row["types"] += [t for t in extra if t not in row["types"]]
        amended.append({"op": op, "added_types": extra, "why": why})
    doc = {"source": args.source, "revision": args.revision, "read_on": args.read_on, "note": args.note,
           "tensorrt_major": args.major, "table_heading_tensorrt": table["tensorrt"], "opset": table["opset"],
           "amendments": amended, "ops": table["ops"]}
    write_table(apply_release_changes(doc, args.major))


if __name__ == "__main__":
    main()
