"""Regenerates the Python gRPC code under services/kuberl/v1 from protos/kuberl/v1.

Run `python -m kuberl.protogen` after editing a .proto file; tests/test_protos.py fails
while the checked-in code is stale.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO / "protos"
OUTPUT_ROOT = REPO / "services"
PACKAGE_DIR = Path("kuberl") / "v1"


def generate(output_root: Path) -> list[Path]:
    """Compiles every proto into output_root/kuberl/v1 and returns the files written."""
    from grpc_tools import protoc  # dev-only dependency

    protos = sorted((PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    (output_root / PACKAGE_DIR).mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={output_root}",
        f"--pyi_out={output_root}",
        f"--grpc_python_out={output_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed: " + " ".join(args))
    return sorted(p for p in (output_root / PACKAGE_DIR).iterdir() if p.name.endswith((".py", ".pyi")) and "_pb2" in p.name)


def stale_files() -> list[str]:
    """Names of generated files that differ from what the protos produce now."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_bytes() for p in generate(Path(tmp))}
    current = {p.name: p.read_bytes() for p in (OUTPUT_ROOT / PACKAGE_DIR).glob("*_pb2*.py*")}
    return sorted(name for name in fresh.keys() | current.keys() if fresh.get(name) != current.get(name))


def main() -> int:
    for path in generate(OUTPUT_ROOT):
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
