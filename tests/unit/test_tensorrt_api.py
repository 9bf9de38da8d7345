"""The TensorRT code against the real API of both majors (TensorRT cannot be installed here).

``tests/api`` holds what the real 10.x and 11.x bindings register (``scripts/tensorrt_api.py``
imports the wheels themselves). mypy checks ``engine/tensorrt.py`` against a stub made from each
version's facts, following every value through the types the bindings declare; the builder's
calls run on a stand-in made from the same facts. Neither can pass on a name a version lacks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import trt_facts
from conftest import require

from dalistream.device import module_available
from dalistream.engine import tensorrt as engine_tensorrt
from dalistream.engine.tensorrt import profile_shapes, serialize_network

ENGINE_CODE = Path(engine_tensorrt.__file__)
MAJORS = {version.split(".")[0] for version in trt_facts.VERSIONS}


def _mypy(stub_version: str, target: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    require(module_available("mypy"), "mypy missing: run scripts/setup.sh --test")
    stubs = tmp_path / f"stubs-{stub_version}"
    (stubs / "tensorrt").mkdir(parents=True)
    (stubs / "tensorrt" / "__init__.pyi").write_text(trt_facts.stub_source(stub_version))
    command = [sys.executable, "-m", "mypy", "--follow-imports=skip", "--ignore-missing-imports", "--no-site-packages",
               "--check-untyped-defs", "--cache-dir", str(tmp_path / "mypy-cache"), str(target)]
    return subprocess.run(command, capture_output=True, text=True, env={"MYPYPATH": str(stubs), "PATH": ""}, timeout=240)


def test_facts_cover_both_majors_and_what_11_removed() -> None:
    assert {"10", "11"} <= MAJORS, trt_facts.VERSIONS
    for version in trt_facts.VERSIONS:
        flags = trt_facts.members(version, "BuilderFlag")
        config = trt_facts.members(version, "IBuilderConfig")
        removed = version.startswith("11.")
        # The implicit-precision API: in 10.x (deprecated), gone in 11.x.
        assert ("FP16" in flags, "INT8" in flags, "OBEY_PRECISION_CONSTRAINTS" in flags) == (not removed,) * 3, version
        assert ("int8_calibrator" in config, "set_calibration_profile" in config) == (not removed,) * 2, version
        assert ("IInt8EntropyCalibrator2" in trt_facts.facts(version)["module"]) == (not removed), version
        assert "STRONGLY_TYPED" in trt_facts.members(version, "NetworkDefinitionCreationFlag"), version


@pytest.mark.parametrize("version", trt_facts.VERSIONS)
def test_engine_code_type_checks_against_each_major(version: str, tmp_path: Path) -> None:
    result = _mypy(version, ENGINE_CODE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_type_check_fails_on_a_name_the_version_lacks(tmp_path: Path) -> None:
    source = ENGINE_CODE.read_text()
    anchor = "    config = builder.create_builder_config()\n"
    assert anchor in source
    broken = tmp_path / "tensorrt_fp16_flag.py"
    broken.write_text(source.replace(anchor, anchor + "    config.set_flag(trt.BuilderFlag.FP16)\n"))
    on_10, on_11 = (_mypy(version, broken, tmp_path) for version in ("10.16", "11.4"))
    assert on_10.returncode == 0, on_10.stdout
    assert on_11.returncode == 1 and '"type[BuilderFlag]" has no attribute "FP16"' in on_11.stdout, on_11.stdout


@pytest.mark.parametrize("version", trt_facts.VERSIONS)
def test_builder_makes_a_strongly_typed_network_without_precision_flags(
    version: str, model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trt = trt_facts.TensorRtDouble(version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    profile = profile_shapes((1, 4, 8), (960, 544))
    serialized, timing = serialize_network(model_path, profile, b"cached timings")
    assert isinstance(serialized, bytes) and isinstance(timing, bytes)
    calls = {name: (args, kwargs) for name, args, kwargs in trt.calls}
    strongly_typed = int(trt_facts.members(version, "NetworkDefinitionCreationFlag")["STRONGLY_TYPED"].split(" = ")[1])
    assert calls["Builder.create_network"] == ((1 << strongly_typed,), {}), version
    assert calls["OnnxParser.parse_from_file"] == ((str(model_path),), {})
    assert calls["IBuilderConfig.create_timing_cache"] == ((b"cached timings",), {})
    assert calls["IOptimizationProfile.set_shape"][0][1:] == (profile.min, profile.opt, profile.max)
    # The file's types decide: no precision flag, no calibrator, no per-layer precision.
    assert not [name for name, _, _ in trt.calls if name.startswith("IBuilderConfig.set_flag") or name.endswith("=")], trt.calls


def test_the_stand_in_has_exactly_the_facts() -> None:
    old, new = trt_facts.TensorRtDouble("10.16"), trt_facts.TensorRtDouble("11.4")
    assert int(old.BuilderFlag.FP16) == int(trt_facts.members("10.16", "BuilderFlag")["FP16"].split(" = ")[1])
    with pytest.raises(AttributeError, match="FP16"):
        new.BuilderFlag.FP16
    with pytest.raises(AttributeError, match="IInt8EntropyCalibrator2"):
        new.IInt8EntropyCalibrator2
    config = new.Builder(new.Logger(new.Logger.WARNING)).create_builder_config()
    with pytest.raises(AttributeError, match="int8_calibrator"):
        config.int8_calibrator = object()
    with pytest.raises(AttributeError, match="no attribute 'invented'"):
        config.invented()
    with pytest.raises(TypeError, match="no constructor"):
        new.IBuilderConfig()
    for version in trt_facts.VERSIONS:
        double = trt_facts.TensorRtDouble(version)
        for qualname, cls in double.classes.items():
            offered = {name for name in vars(cls) if not name.startswith("_")} | {
                name for base in cls.__mro__[1:] for name in vars(base) if not name.startswith("_") and base is not object
            }
            assert offered <= set(trt_facts.members(version, qualname)), (version, qualname, offered - set(trt_facts.members(version, qualname)))
