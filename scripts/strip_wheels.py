"""Strip debug symbols from the shared objects inside wheels, keeping the wheels valid.

    python scripts/strip_wheels.py DIR

For the container image (scripts/build_image.sh): manylinux wheels ship their
extensions with symbol tables a running service never reads -- questdb's client is
55 MB with them, 22 MB without.  Each wheel that has a ``.so`` is rewritten in place:
``strip --strip-unneeded`` on every shared object, then the ``RECORD`` rewritten with
the new hashes and sizes (PEP 427), so pip installs it like the original.  Prints the
bytes saved; exits 2 when ``strip`` is missing.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def strip_wheel(wheel: Path, strip: str) -> int:
    """Rewrite ``wheel`` with stripped shared objects; return the bytes saved."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        if not any(n.endswith(".so") or ".so." in n for n in names):
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            archive.extractall(root)
            before = sum((root / n).stat().st_size for n in names if not n.endswith("/"))
            for name in names:
                if name.endswith(".so") or ".so." in name:
                    subprocess.run([strip, "--strip-unneeded", str(root / name)], check=True)
            record = next(n for n in names if n.endswith(".dist-info/RECORD"))
            lines = [
                _record_line(n, (root / n).read_bytes())
                for n in names
                if n != record and not n.endswith("/")
            ]
            (root / record).write_text("\n".join([*lines, f"{record},,"]) + "\n")
            after = sum((root / n).stat().st_size for n in names if not n.endswith("/"))
            rewritten = wheel.with_suffix(".tmp")
            with zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as out:
                for name in names:
                    if not name.endswith("/"):
                        out.write(root / name, name)
            rewritten.replace(wheel)
    return before - after


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python scripts/strip_wheels.py WHEEL_DIR", file=sys.stderr)
        return 2
    strip = shutil.which("strip")
    if strip is None:
        print("strip_wheels: `strip` not found; install binutils", file=sys.stderr)
        return 2
    saved = sum(strip_wheel(w, strip) for w in sorted(Path(argv[0]).glob("*.whl")))
    print(f"strip_wheels: {saved / 1e6:.1f} MB of symbols removed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
