"""A short run of scripts/fuzz_depacketizers.py (the full one: 100,000 packets per codec, see its docstring)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from conftest import ROOT

from dalistream.rtp.h265 import H265Depacketizer

SCRIPT = ROOT / "scripts" / "fuzz_depacketizers.py"
PACKETS = 2_000


@pytest.fixture(scope="module")
def fuzzer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fuzz_depacketizers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_short_fuzz_finds_no_violation(fuzzer: ModuleType, codec: str) -> None:
    report = fuzzer.fuzz(codec, PACKETS, seed=7, peak_limit_bytes=2**20)
    assert report.violations == []
    assert report.packets == PACKETS
    assert report.access_units > 0 and report.parse_errors > 0 and report.drops


def test_fuzz_reports_a_depacketizer_that_raises(fuzzer: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: H265Depacketizer, payload: bytes) -> None:
        raise IndexError("planted bug")

    monkeypatch.setattr(H265Depacketizer, "_aggregate", broken)
    report = fuzzer.fuzz("h265", PACKETS, seed=7, peak_limit_bytes=2**20)
    assert any("planted bug" in violation for violation in report.violations)
    assert fuzzer.main(["--codec", "h265", "--packets", "300"]) == 1
