"""Which engine ``[model]`` gets on each device, and the settings refused before start-up."""

from __future__ import annotations

import dataclasses

import pytest

from dalistream.config import ConfigError, ModelConfig
from dalistream.engine import engine_choice

EVERYTHING = {"onnxruntime", "tensorrt", "cupy", "torch", "onnx2torch"}


def installed(*modules: str):
    return lambda name: name in modules


def model(**changes: object) -> ModelConfig:
    return dataclasses.replace(ModelConfig(), **changes)


@pytest.mark.parametrize(
    ("device", "precision", "modules", "engine"),
    [
        ("cpu", "fp32", EVERYTHING, "onnxruntime"),
        ("cpu", "int8", EVERYTHING, "onnxruntime"),
        ("gpu", "int8", EVERYTHING, "tensorrt"),
        ("gpu", "fp16", EVERYTHING, "tensorrt"),
        ("gpu", "fp16", {"torch", "onnx2torch", "cupy"}, "torch"),
        ("gpu", "fp32", {"torch", "onnx2torch", "cupy"}, "torch"),
    ],
)
def test_auto_picks_the_engine_of_the_device_that_is_installed(device, precision, modules, engine) -> None:
    assert engine_choice(model(precision=precision), device, installed(*modules)) == engine


@pytest.mark.parametrize(
    ("changes", "device", "modules", "message"),
    [
        ({"precision": "fp16"}, "cpu", EVERYTHING, 'precision: "fp16" has no CPU engine; use fp32 or int8'),
        ({"precision": "int8", "engine": "torch"}, "gpu", EVERYTHING, '"int8" has no torch engine.*"tensorrt" has it'),
        ({"engine": "torch"}, "cpu", EVERYTHING, '"torch" runs on the GPU, and the device plan is cpu'),
        ({"engine": "onnxruntime"}, "gpu", EVERYTHING, '"onnxruntime" runs on the CPU'),
        ({"engine": "tensorrt"}, "gpu", {"cupy"}, "tensorrt needs tensorrt installed"),
        ({"precision": "fp16"}, "gpu", {"cupy"}, "model.engine: tensorrt needs tensorrt installed"),
        ({"precision": "int8"}, "gpu", {"torch", "onnx2torch", "cupy"}, "tensorrt needs tensorrt installed"),
    ],
)
def test_what_cannot_run_is_refused_naming_the_key(changes, device, modules, message) -> None:
    with pytest.raises(ConfigError, match=message):
        engine_choice(model(**changes), device, installed(*modules))


def test_an_unknown_engine_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.engine: must be one of"):
        ModelConfig(engine="openvino").validate("model")
