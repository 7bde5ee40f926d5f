"""The committed gRPC stubs are what ``scripts/gen_proto.py`` generates from the .proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_stubs_have_not_drifted() -> None:
    result = run("--check")
    assert result.returncode == 0, result.stderr


def test_the_check_fails_on_drift(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Prove the check can fail: a stale stub is reported, in one line, exit 1."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_proto
    finally:
        sys.path.pop(0)
    fake = tmp_path / "proto"
    fake.mkdir()
    for name in (*gen_proto.OUTPUTS, "dagmanager.proto"):
        (fake / name).write_text((gen_proto.PROTO_DIR / name).read_text())
    monkeypatch.setattr(gen_proto, "PROTO_DIR", fake)
    monkeypatch.setattr(gen_proto, "PROTO", fake / "dagmanager.proto")
    assert gen_proto.main(["--check"]) == 0
    (fake / "dagmanager_pb2_grpc.py").write_text("# edited by hand\n")
    assert gen_proto.main(["--check"]) == 1
    out = tmp_path / "out"
    out.mkdir()
    stub = gen_proto.generate(out)["dagmanager_pb2_grpc.py"]
    assert gen_proto.PACKAGE_IMPORT[1] in stub and "\n" + gen_proto.PACKAGE_IMPORT[0] not in stub
