"""Serve an Annex-B H.264 (or, with ``--codec h265``, H.265) file on N RTSP mounts, looped, untranscoded.

Run with Debian's Python, which has the GStreamer bindings (python3-gi, gir1.2-gst-rtsp-server-1.0),
by its path in the package (``dalistream.tools.localserver`` does): it imports nothing of dalistream,
so it runs from a checkout and from an installed wheel alike::

    /usr/bin/python3 dalistream/tools/rtsp_server.py --file media/sample_1080p25.h264 --mounts 4 --port 8554 \\
        [--address 127.0.0.1] [--user NAME --auth basic|digest] [--tls-cert PEM --tls-key PEM]

With ``--user`` every mount asks for that user's credentials (Basic or Digest, per ``--auth``);
the password comes from ``--password`` or, so it stays out of ``ps``, from the environment
variable ``RTSP_SERVER_PASSWORD``. With ``--tls-cert``/``--tls-key`` the server speaks RTSPS
(RTSP over TLS) instead of plain RTSP on the same port.

Mounts are ``/cam0`` ... ``/cam{N-1}``. Media is not shared: every client session gets its own
pipeline that starts at the first frame of the file, so the first RTP timestamp a client sees is
frame 0 and frame ``n`` arrives with RTP time ``first + n * 90000 / fps``, on and on across the loop
seam. RTP over UDP and over the RTSP TCP connection (interleaved) are both offered.

Once listening it prints exactly one line, ``READY <port>``, on stdout (``--port 0`` picks a free
port). SIGTERM or SIGINT closes the client connections and exits with status 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gio, GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

DEFAULT_BACKLOG = 128  # pending TCP connects; GLib's default of 10 drops bursts of clients
PARSER_NAME = "parse"
PAYLOADER_NAME = "pay0"  # GstRtspMediaFactory finds the streams by the names pay0, pay1, ...
SOURCE_ELEMENT = "multifilesrc"
PASSWORD_ENV = "RTSP_SERVER_PASSWORD"  # where the password comes from when --password is not given
ROLE = "viewer"  # the media-factory role granted to the one configured user


@dataclass(frozen=True, slots=True)
class CodecElements:
    """The GStreamer pieces that carry one codec's elementary stream from file to RTP."""

    caps: str
    """Caps of the raw file, so no typefinding is needed."""
    parser: str
    """Parser that splits the byte stream into access units and stamps their DTS."""
    payloader: str
    """RTP payloader for the codec."""
    payload_type: int
    """Dynamic RTP payload type announced in the SDP."""


CODECS: dict[str, CodecElements] = {
    "h264": CodecElements("video/x-h264,stream-format=byte-stream", "h264parse", "rtph264pay", 96),
    "h265": CodecElements("video/x-h265,stream-format=byte-stream", "h265parse", "rtph265pay", 96),
}


def quote_launch_value(value: str) -> str:
    """Double-quote ``value`` for a gst-launch description."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def launch_description(path: Path, codec: CodecElements) -> str:
    """Launch string of the bin a mount builds for each client session.

    ``multifilesrc loop=true`` reads the whole file again at its end; the parser sees one
    continuous byte stream, so its timestamps keep counting up across the seam.
    ``config-interval=-1`` repeats the parameter sets in-band before every IDR.
    """
    # multifilesrc runs its location through printf() with the file index.
    location = str(path).replace("%", "%%")
    return (
        f"( {SOURCE_ELEMENT} location={quote_launch_value(location)} loop=true caps={quote_launch_value(codec.caps)}"
        f" ! {codec.parser} name={PARSER_NAME}"
        f" ! {codec.payloader} name={PAYLOADER_NAME} pt={codec.payload_type} config-interval=-1 )"
    )


def fill_pts_from_dts(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    """Pad probe: give each access unit a PTS equal to its DTS.

    A parser fed a raw elementary stream can only interpolate DTS; the RTP payloader takes the RTP
    timestamp from the PTS alone and repeats the last one when it is missing, so without this every
    packet carries the same RTP time (and the sink cannot pace the stream). PTS == DTS is exact for
    streams without frame reordering, such as the generated samples (no B-frames).
    ``h264timestamper`` does not help: it derives DTS from PTS, the other direction, and passes a
    DTS-only stream on with no timestamps at all. The buffer is stamped in place because these
    bindings cannot swap the probe's buffer for a copy; the parser has just produced it and no
    element downstream has seen it yet.
    """
    buffer = info.get_buffer()
    if buffer is not None and buffer.pts == Gst.CLOCK_TIME_NONE:
        buffer.pts = buffer.dts
    return Gst.PadProbeReturn.OK


def on_media_configure(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
    """Install the PTS probe on the parser of a freshly built per-session pipeline."""
    parser = media.get_element().get_by_name(PARSER_NAME)
    parser.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, fill_pts_from_dts)


def build_server(path: Path, mounts: int, address: str, port: int, codec: CodecElements) -> GstRtspServer.RTSPServer:
    """An unattached RTSP server with mounts ``/cam0`` ... ``/cam{mounts - 1}`` looping ``path``."""
    server = GstRtspServer.RTSPServer()
    server.set_address(address)
    server.set_service(str(port))
    server.set_backlog(DEFAULT_BACKLOG)
    mount_points = server.get_mount_points()
    launch = launch_description(path, codec)
    for index in range(mounts):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(False)
        factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP | GstRtsp.RTSPLowerTrans.TCP)
        factory.connect("media-configure", on_media_configure)
        mount_points.add_factory(f"/cam{index}", factory)
    return server


def secure_server(
    server: GstRtspServer.RTSPServer,
    mounts: int,
    *,
    user: str | None,
    password: str,
    method: str,
    tls: Gio.TlsCertificate | None,
) -> None:
    """Require ``user``'s credentials on every mount and/or serve RTSPS with ``tls``.

    ``method`` is ``"basic"`` or ``"digest"``: only that scheme is offered in the 401 challenge.
    Clients without valid credentials get 401 on every request; the user's token carries a role
    that may access and construct the mounts' media.
    """
    auth = GstRtspServer.RTSPAuth()
    if tls is not None:
        auth.set_tls_certificate(tls)
    if user is None:
        # TLS only: everyone may watch.
        auth.set_default_token(_viewer_token())
    elif method == "basic":
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), _viewer_token())
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.BASIC)
    else:
        auth.add_digest(user, password, _viewer_token())
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role(ROLE)
    permissions.add_permission_for_role(ROLE, "media.factory.access", True)
    permissions.add_permission_for_role(ROLE, "media.factory.construct", True)
    mount_points = server.get_mount_points()
    for index in range(mounts):
        factory, _ = mount_points.match(f"/cam{index}")
        factory.set_permissions(permissions)
    server.set_auth(auth)


def _viewer_token() -> GstRtspServer.RTSPToken:
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", ROLE)
    return token


def missing_elements(codec: CodecElements) -> list[str]:
    """Names of the GStreamer elements the pipeline needs that are not installed."""
    needed = (SOURCE_ELEMENT, codec.parser, codec.payloader)
    return [name for name in needed if Gst.ElementFactory.find(name) is None]


def close_client(
    _server: GstRtspServer.RTSPServer, _client: GstRtspServer.RTSPClient
) -> GstRtspServer.RTSPFilterResult:
    """Client filter that disconnects every client."""
    return GstRtspServer.RTSPFilterResult.REMOVE


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and validate the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True, help="Annex-B elementary stream to loop")
    parser.add_argument("--mounts", type=int, default=1, help="number of mounts /cam0 ... /camN-1 (default 1)")
    parser.add_argument("--port", type=int, default=8554, help="TCP port for RTSP; 0 picks a free one (default 8554)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--user", help=f"require this user's credentials (password: --password or ${PASSWORD_ENV})")
    parser.add_argument("--password", help=f"password for --user (default: ${PASSWORD_ENV})")
    parser.add_argument("--auth", choices=("basic", "digest"), default="digest", help="scheme offered (default digest)")
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate: serve RTSPS (needs --tls-key)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    parser.add_argument("--codec", choices=sorted(CODECS), default="h264", help="codec of --file (default h264)")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        parser.error(f"--file {args.file}: no such file")
    if args.mounts < 1:
        parser.error(f"--mounts must be at least 1, got {args.mounts}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    if args.user is not None:
        if args.password is None:
            args.password = os.environ.get(PASSWORD_ENV)
        if not args.password:
            parser.error(f"--user needs --password or ${PASSWORD_ENV}")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit status."""
    args = parse_args(argv)
    Gst.init(None)
    codec = CODECS[args.codec]
    if missing := missing_elements(codec):
        print(f"missing GStreamer elements: {', '.join(missing)}", file=sys.stderr)
        return 1

    server = build_server(args.file.resolve(), args.mounts, args.address, args.port, codec)
    tls = None
    if args.tls_cert is not None:
        try:
            tls = Gio.TlsCertificate.new_from_files(str(args.tls_cert), str(args.tls_key))
        except GLib.Error as exc:
            print(f"cannot load TLS certificate/key: {exc.message}", file=sys.stderr)
            return 1
    if args.user is not None or tls is not None:
        secure_server(server, args.mounts, user=args.user, password=args.password or "", method=args.auth, tls=tls)
    if server.attach(None) == 0:
        print(f"cannot listen on {args.address}:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()

    def stop() -> bool:
        loop.quit()
        return GLib.SOURCE_REMOVE

    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, stop)

    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    server.client_filter(close_client)
    return 0


if __name__ == "__main__":
    sys.exit(main())
