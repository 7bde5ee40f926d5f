#!/usr/bin/env python3
"""Regenerate the DAG Manager gRPC stubs from ``dagmanager.proto``.

    python scripts/gen_proto.py           # write qmtl/services/dagmanager/proto/*_pb2*.py(i)
    python scripts/gen_proto.py --check   # exit 1 when the committed stubs drifted

grpc_tools writes ``import dagmanager_pb2`` into the service stub, which only works with
the proto directory on sys.path; the package-import fix rewrites it to
``from qmtl.services.dagmanager.proto import dagmanager_pb2``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = ROOT / "qmtl" / "services" / "dagmanager" / "proto"
PROTO = PROTO_DIR / "dagmanager.proto"
OUTPUTS = ("dagmanager_pb2.py", "dagmanager_pb2.pyi", "dagmanager_pb2_grpc.py")
PACKAGE_IMPORT = (
    "import dagmanager_pb2 as dagmanager__pb2",
    "from qmtl.services.dagmanager.proto import dagmanager_pb2 as dagmanager__pb2",
)


def generate(out: Path) -> dict[str, str]:
    from grpc_tools import protoc

    argv = [
        "protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--pyi_out={out}",
        f"--grpc_python_out={out}", str(PROTO),
    ]  # fmt: skip
    if protoc.main(argv) != 0:
        raise SystemExit(f"error: protoc failed on {PROTO}")
    files = {name: (out / name).read_text() for name in OUTPUTS}
    files["dagmanager_pb2_grpc.py"] = files["dagmanager_pb2_grpc.py"].replace(*PACKAGE_IMPORT)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on drift, write nothing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = generate(Path(tmp))
    drift = [
        n
        for n, text in files.items()
        if not (PROTO_DIR / n).is_file() or (PROTO_DIR / n).read_text() != text
    ]
    if args.check:
        if drift:
            print(f"gRPC stubs out of date: {', '.join(drift)}; run python scripts/gen_proto.py",
                  file=sys.stderr)  # fmt: skip
            return 1
        print("gRPC stubs up to date")
        return 0
    for name, text in files.items():
        (PROTO_DIR / name).write_text(text)
    print(f"wrote {', '.join(OUTPUTS)} in {PROTO_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
