"""RTP layer: packets, payload depacketizers, SDP video formats and timestamps (sans-IO)."""

from dalistream.rtp.depacketizer import AccessUnit, AccessUnitDropped, DepacketizerEvent, Depacketizer, PacketLoss
from dalistream.rtp.h264 import H264Depacketizer, H264Event
from dalistream.rtp.h265 import H265Depacketizer
from dalistream.rtp.packet import RtpError, RtpPacket
from dalistream.rtp.sdp import SdpError, VideoFormat, parse_sdp, video_format
from dalistream.rtp.timestamps import TimestampUnwrapper

__all__ = [
    "AccessUnit",
    "AccessUnitDropped",
    "Depacketizer",
    "DepacketizerEvent",
    "H264Depacketizer",
    "H264Event",
    "H265Depacketizer",
    "PacketLoss",
    "RtpError",
    "RtpPacket",
    "SdpError",
    "TimestampUnwrapper",
    "VideoFormat",
    "depacketizer_for",
    "parse_sdp",
    "video_format",
]


def depacketizer_for(fmt: VideoFormat) -> Depacketizer:
    """A fresh depacketizer for ``fmt``'s codec, primed with its SDP parameter sets.

    ``video_format`` only accepts the codecs handled here; any other is a programming error
    (``ValueError``).
    """
    if fmt.codec == "H264":
        return H264Depacketizer(fmt.parameter_sets)
    if fmt.codec == "H265":
        return H265Depacketizer(fmt.parameter_sets, donl=fmt.donl)
    raise ValueError(f"no depacketizer for codec {fmt.codec!r}")
