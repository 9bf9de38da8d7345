"""The inference layout resolved from the configuration, the device and the cores."""

import pytest

from dalistream.config import ModelConfig, PipelineConfig
from dalistream.engine.shape import InferenceShape, inference_shape


@pytest.mark.parametrize(
    ("pipeline", "model", "device", "cores", "expected"),
    [
        ({}, {}, "cpu", 2, InferenceShape(2, 1, 1, 2, 1)),  # a detector per core, single frames, a thread each
        ({}, {}, "cpu", 8, InferenceShape(8, 1, 1, 8, 1)),
        ({"infer_workers": 2}, {}, "cpu", 8, InferenceShape(2, 1, 4, 2, 1)),  # the cores shared out
        ({"infer_workers": 3}, {}, "cpu", 2, InferenceShape(3, 1, 1, 3, 1)),
        ({"infer_workers": 1, "max_batch": 8}, {"intra_op_threads": 0}, "cpu", 2, InferenceShape(1, 8, 2, 1, 1)),
        ({"max_batch": 4}, {"intra_op_threads": 3}, "cpu", 2, InferenceShape(2, 4, 3, 2, 1)),  # configured values win
        ({}, {}, "gpu", 16, InferenceShape(3, 8, 0, 1, 2)),  # a batch per stage of one double-buffered detector
        ({"infer_workers": 1, "max_batch": 16}, {}, "gpu", 16, InferenceShape(1, 16, 0, 1, 2)),
    ],
)
def test_shape(pipeline, model, device, cores, expected):
    assert inference_shape(PipelineConfig(**pipeline), ModelConfig(**model), device, cores) == expected
