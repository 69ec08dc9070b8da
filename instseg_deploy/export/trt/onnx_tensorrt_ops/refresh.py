"""Regenerate ``<major>.json`` from an onnx-tensorrt ``docs/operators.md`` (a maintainer's tool, not run by tests).

    git -C <onnx-tensorrt clone> show release/10.1-GA:docs/operators.md > operators.md
    python -m instseg_deploy.export.trt.onnx_tensorrt_ops.refresh operators.md --major 10 \\
        --source github.com/onnx/onnx-tensorrt --revision "release/10.1-GA (96e7811...)"

The JSON keeps the table as written (op -> {supported, types, notes}) plus the opset range of its
heading; ``AMENDMENTS`` are the few places where the same revision's importer accepts more than
its table says, each with where that was read.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators_md", type=Path)
    parser.add_argument("--major", type=int, required=True, help="the TensorRT major version the file is for")
    parser.add_argument("--source", required=True, help="where operators.md came from (repository or URL)")
    parser.add_argument("--revision", required=True, help="tag / commit / release it was read at")
    parser.add_argument("--note", default="", help="anything a reader of the JSON must know about the source")
    parser.add_argument("--read-on", default=datetime.date.today().isoformat(), help="date it was read")
    args = parser.parse_args(argv)
    table = parse_operators_md(args.operators_md.read_text(encoding="utf-8"))
    amended = []
    for op, extra, why in AMENDMENTS:
        row = table["ops"][op]
        row["types"] += [t for t in extra if t not in row["types"]]
        amended.append({"op": op, "added_types": extra, "why": why})
    doc = {"source": args.source, "revision": args.revision, "read_on": args.read_on, "note": args.note,
           "tensorrt_major": args.major, "table_heading_tensorrt": table["tensorrt"], "opset": table["opset"],
           "amendments": amended, "ops": table["ops"]}
    out = HERE / f"{args.major}.json"
    out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {out}: {len(table['ops'])} ops, opset {table['opset'][0]}..{table['opset'][1]}")


if __name__ == "__main__":
    main()
