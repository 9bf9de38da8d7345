"""How inference is laid out on the device: how many batches are analysed at once, by how many
detectors with how many input buffers each, how large a batch may be, and how many threads each
ONNX Runtime session gets. Resolved once, from the configuration, the device plan and the
cores this process may use.

On a CPU, batching buys ONNX Runtime no throughput (RetinaFace-MobileNet0.25 at 960×544 costs
the same CPU per frame at batch 1, 2 or 4, within noise) while every frame of a batch waits for
the whole batch, and one session's thread pool parallelises a convolution worse than sessions
side by side do whole frames (on the 2-core machine: two one-thread sessions ran 13–15 frames/s,
one two-thread session 8–11). So the CPU default is single-frame batches on one detector per
core, each session on one thread; consecutive frames overlap their preprocessing, inference and
postprocessing. A GPU wants the opposite: large batches, through one detector whose three
stages are pipelined on three streams (:mod:`~dalistream.engine.schedule`) with two input
buffers, and three batches in flight, so batch k+1 is preprocessed while k infers and k-1 is
reduced to faces, and the GPU is not left idle by the host's share of each batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dalistream.config import ModelConfig, PipelineConfig
from dalistream.device import GPU
from dalistream.engine.schedule import STAGES

GPU_MAX_BATCH = 8  # the default TensorRT profile's largest batch
GPU_BUFFERS = 2  # input buffers of the GPU detector: double-buffered


@dataclass(frozen=True, slots=True)
class InferenceShape:
    workers: int
    """Batches analysed at once (a thread each)."""
    max_batch: int
    """Most frames in one batch."""
    intra_op_threads: int
    """ONNX Runtime threads inside one operator, per session (CPU)."""
    detectors: int
    """Detectors the workers share out (each its graphs and engine session)."""
    buffers: int
    """Input buffers (DALI graphs) per detector: 2 pipelines its stages across batches."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def inference_shape(pipeline: PipelineConfig, model: ModelConfig, device: str, cores: int) -> InferenceShape:
    """The shape for ``device`` on ``cores`` cores; configured values (non-zero) win."""
    if device == GPU:
        workers = pipeline.infer_workers or len(STAGES)  # one batch in each stage
        return InferenceShape(workers, pipeline.max_batch or GPU_MAX_BATCH, model.intra_op_threads, 1, GPU_BUFFERS)
    workers = pipeline.infer_workers or cores
    return InferenceShape(workers, pipeline.max_batch or 1, model.intra_op_threads or max(1, cores // workers), workers, 1)
