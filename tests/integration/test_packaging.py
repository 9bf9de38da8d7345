"""The built wheel runs the demo on its own: installed in a fresh virtualenv, run from an empty folder.

The wheel is built from a copy of the checkout's files (as git lists them), so nothing stale in
``build/`` slips in. The fresh virtualenv gets dalistream from the wheel only; for its dependencies
(about 1.5 GB) one ``.pth`` line adds the project virtualenv's site-packages after its own, as a
plain path, so that virtualenv's own ``.pth`` files (among them the editable install's import hook
into the checkout) never run. An audit hook in the demo's process records every file Python opens
and every command it starts; none may lie in the checkout outside the project virtualenv. (FFmpeg
and ONNX Runtime open the clip and the model in C, unseen by the hook: that they come from the cache
is the package's own answer, checked first.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import MODEL, ROOT
from dalistream.tools.demo import SAMPLE_CLIP, SAMPLE_TRUTH

# Runs ``python -m dalistream`` with an audit hook; argv: <checkout> <allowed prefix> <report file> <dalistream args…>
WATCHED_RUN = """
import atexit, json, os, runpy, sys
checkout, allowed, report = sys.argv[1:4]
del sys.argv[1:4]
touched = set()

def watch(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        paths = [os.fsdecode(args[0])]
    elif event == "subprocess.Popen":
        paths = [os.fsdecode(arg) for arg in args[1] if isinstance(arg, (str, bytes))]
    else:
        return
    touched.update(p for p in map(os.path.abspath, paths) if p.startswith(checkout) and not p.startswith(allowed))

atexit.register(lambda: open(report, "w").write(json.dumps(sorted(touched))))
sys.addaudithook(watch)
sys.argv[0] = "dalistream"
runpy.run_module("dalistream", run_name="__main__")
"""


def build_wheel(into: Path) -> Path:
    """Copy the files git knows (tracked and new, not ignored) and build the wheel from the copy."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    source = into / "source"
    for name in filter(None, listed):
        if (ROOT / name).is_file():  # a tracked file deleted in the work tree is not copied
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into), str(source)],
        check=True,
    )
    (wheel,) = into.glob("dalistream-*.whl")
    return wheel


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A virtualenv holding the wheel, borrowing the project virtualenv's packages; returns its python."""
    venv.create(path, with_pip=False)
    python = path / "bin" / "python"
    # Install before the borrowed packages are visible: pip would take the editable install there as this one.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)], check=True)
    site_packages = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True
    ).stdout.strip())
    (site_packages / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.mark.integration
def test_wheel_install_runs_the_demo_from_an_empty_folder(gst_rtsp_server_available, tmp_path: Path):
    wheel = build_wheel(tmp_path / "dist")
    python = fresh_venv(tmp_path / "venv", wheel)
    cache, run = tmp_path / "cache", tmp_path / "run"
    run.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["DALISTREAM_CACHE"] = str(cache)

    def dalistream(*args: str, module: str = "dalistream") -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, "-m", module, *args], cwd=run, env=env, capture_output=True, text=True, timeout=120)

    module, home = subprocess.run(
        [python, "-c", "import dalistream.tools.assets as a; print(a.__file__); print(a.HOME)"],
        cwd=run, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()
    assert Path(module).is_relative_to(tmp_path / "venv") and home == str(cache)

    # An empty cache: the demo names the commands that make its files, and does nothing else.
    refused = dalistream("demo", "--cameras", "1", "--duration", "1")
    assert refused.returncode == 2, refused.stderr
    assert "-m dalistream.tools.provision" in refused.stderr and "-m dalistream.tools.sample" in refused.stderr
    assert not (run / "out").exists()

    # The checkout's files, made by the same generator, stand in for the minute of making them;
    # the installed commands check them (the model against its sha256, the clip against its parameters).
    for made in (MODEL, SAMPLE_CLIP, SAMPLE_TRUTH):
        (cache / made.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(made, cache / made.parent.name / made.name)
    provisioned = dalistream(module="dalistream.tools.provision")
    assert provisioned.returncode == 0 and "already the verified model" in provisioned.stdout, provisioned.stderr
    sampled = dalistream(module="dalistream.tools.sample")
    assert sampled.returncode == 0 and "up to date" in sampled.stdout, sampled.stderr

    touched = tmp_path / "touched.json"
    demo = subprocess.run(
        [python, "-c", WATCHED_RUN, str(ROOT) + os.sep, sysconfig.get_path("purelib"), str(touched),
         "demo", "--cameras", "1", "--duration", "4", "--json"],
        cwd=run, env=env, capture_output=True, text=True, timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    report = json.loads(demo.stdout)
    assert report["cameras"]["cam0"]["analysed"] >= 10
    assert report["recall"]["ratio"] >= 0.9  # the ground truth was found in the cache
    assert all(Path(run, name).resolve().is_relative_to(run) for name in report["run"]["files"])
    assert json.loads(touched.read_text()) == []
