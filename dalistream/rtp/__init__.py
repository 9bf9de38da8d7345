"""RTP layer: packets, payload depacketizers, SDP video formats and timestamps (sans-IO)."""

from dalistream.rtp.h264 import AccessUnit, AccessUnitDropped, H264Depacketizer, H264Event, PacketLoss
from dalistream.rtp.packet import RtpError, RtpPacket
from dalistream.rtp.sdp import SdpError, VideoFormat, video_format
from dalistream.rtp.timestamps import TimestampUnwrapper

__all__ = [
    "AccessUnit",
    "AccessUnitDropped",
    "H264Depacketizer",
    "H264Event",
    "PacketLoss",
    "RtpError",
    "RtpPacket",
    "SdpError",
    "TimestampUnwrapper",
    "VideoFormat",
    "video_format",
]
