"""The ``eval`` command, run as users run it, on the faces-dev WIDER FACE subset (FP32).

The data set lives outside the repository (../shared/data/faces-dev, research licence); tests
that need it skip without it (fail in CI). The whole set (194 images, 4,259 faces) at 640x640 takes 10–20 s
on the two-core development machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def run_eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dalistream", "eval", *args], capture_output=True, text=True, timeout=240
    )


def test_eval_640_reports_sane_ap(faces_dev: Path, model_path: Path) -> None:
    done = run_eval("--images", str(faces_dev / "images"), "--gt", str(faces_dev / "gt.txt"), "--input", "640x640", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["images"], report["faces"], report["input"], report["precision"]) == (194, 4259, [640, 640], "fp32")
    # RetinaFace-MobileNet0.25 with WIDER images scaled to 640 px: small faces are lost first.
    assert report["easy"] > 80 and report["medium"] > 75 and report["hard"] > 40
    assert report["easy"] > report["medium"] > report["hard"] > report["all"] > 25


def test_eval_rejects_ground_truth_of_another_image_size(faces_dev: Path, model_path: Path, tmp_path: Path) -> None:
    lines = (faces_dev / "gt.txt").read_text(encoding="utf-8").splitlines()
    name, width, height = lines[0].split()
    count = int(lines[1])
    gt = tmp_path / "gt.txt"
    gt.write_text("\n".join([f"{name} {int(width) + 1} {height}", *lines[1 : 2 + count]]) + "\n", encoding="utf-8")
    done = run_eval("--images", str(faces_dev / "images"), "--gt", str(gt), "--input", "320x320")
    assert done.returncode == 1
    assert f"ground truth says {int(width) + 1}x{height}" in done.stderr


@pytest.mark.parametrize(("value", "message"), [("640", "expected WIDTHxHEIGHT"), ("640x500", "multiple of 32")])
def test_eval_rejects_bad_input_size(value: str, message: str) -> None:
    done = run_eval("--images", ".", "--gt", "gt.txt", "--input", value)
    assert done.returncode == 2
    assert message in done.stderr
