"""Generate the Python code for every .proto in this folder: `python -m protos.generate`.

The generated modules sit beside their .proto and are never edited by hand; a test runs this
generation into a temporary folder and fails when the committed files differ from it.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTOS_DIR = Path(__file__).resolve().parent
ROOT = PROTOS_DIR.parent


def generate(out_dir: Path) -> list[Path]:
    """Write the generated modules under `out_dir`/protos and return their paths."""
    (out_dir / "protos").mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    written: list[Path] = []
    for proto in sorted(PROTOS_DIR.glob("*.proto")):
        relative = proto.relative_to(ROOT).as_posix()
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{ROOT}",
                f"-I{well_known}",
                f"--python_out={out_dir}",
                f"--pyi_out={out_dir}",
                f"--grpc_python_out={out_dir}",
                relative,
            ]
        )
        if status != 0:
            raise RuntimeError(f"protoc failed on {relative} with status {status}")
        stem = proto.stem
        written += [
            out_dir / "protos" / f"{stem}{suffix}"
            for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
        ]
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=ROOT, help="root to write protos/*_pb2*.py under"
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
