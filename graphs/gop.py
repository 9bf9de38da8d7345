"""GPU decode of one closed GOP per sample: an MPEG-TS stream in, the chosen frames out (RGB, FHWC)."""

from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types

GOP = "gop"
"""Name of the external source fed with one GOP per sample: 1-D uint8, the GOP (SPS/PPS + IDR +
the rest) as an MPEG-TS stream with timestamps (:meth:`dalistream.decode.gop.Gop.mpegts`)."""
FRAMES = "frames"
"""Name of the external source fed with the display-order indices of the frames wanted, per sample."""


@pipeline_def
def gop_decode(device: str = "mixed"):
    """Decodes each sample's GOP with NVDEC (DALI's ``"mixed"`` video decoder, which demuxes the
    stream with FFmpeg and indexes its frames by timestamp) and returns only the frames whose
    display-order indices are fed to ``FRAMES``, as one FHWC uint8 RGB tensor on the device.
    (``"cpu"`` decodes only VP8, VP9 and MJPEG: for checking the graph without a GPU.)"""
    gop = fn.external_source(name=GOP, device="cpu", dtype=types.DALIDataType.UINT8, ndim=1, no_copy=True)
    wanted = fn.external_source(name=FRAMES, device="cpu", dtype=types.DALIDataType.INT32, ndim=1)
    return fn.decoders.video(gop, device=device, frames=wanted)
