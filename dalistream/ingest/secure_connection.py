"""aiortsp's RTSP connection with our authentication, TLS settings, credential-free logs,
repeated reply headers merged (aiortsp itself fails on them) and bounded receiving.

aiortsp 1.4.0 answers Digest without ``qop`` only, and logs every request it sends at debug
level, ``Authorization`` header included. :class:`RtspConnection` swaps its authentication for
:class:`~dalistream.ingest.auth.Authenticator`, and :class:`RedactingLogger` is the logger to
hand aiortsp: it strips authorization headers and the secrets themselves from every record
before the record exists, so no handler, level or filter set-up can leak them.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any

from aiortsp.rtsp.connection import RTSPConnection
from aiortsp.rtsp.errors import RTSPConnectionError
from aiortsp.rtsp.parser import RTSPResponse

from dalistream.config import DEFAULT_PORTS

from .auth import Authenticator, Credentials, basic_authorization
from .limits import ReceiveBudget, parser_overrun, printable

DEFAULT_RTSPS_PORT = DEFAULT_PORTS["rtsps"]

REDACTED = "***"
_AUTHORIZATION_LINE = re.compile(r"(?im)^((?:proxy-)?authorization)[ \t]*:[^\r\n]*")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without authorization header values and without any of ``secrets``."""
    text = _AUTHORIZATION_LINE.sub(rf"\1: {REDACTED}", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def credential_secrets(credentials: Credentials | None) -> tuple[str, ...]:
    """The strings that must never appear in output for ``credentials``, longest first."""
    if credentials is None:
        return ()
    basic = basic_authorization(credentials).split(" ", 1)[1]
    user_pass = f"{credentials.username}:{credentials.password}"
    return tuple(sorted({user_pass, basic, credentials.password}, key=len, reverse=True))


# Headers that may legitimately come more than once, each one a separate value (RFC 7235 §4.1).
_REPEATABLE_HEADERS = frozenset({"www-authenticate", "proxy-authenticate"})
# Headers whose value is a comma-separated list: repeats join into one (RFC 7230 §3.2.2).
_LIST_HEADERS = frozenset({"public", "allow", "supported", "require", "unsupported", "proxy-require", "rtp-info"})


def merge_repeated_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """aiortsp's parsed headers with repeats resolved, so each header has the type aiortsp expects.

    aiortsp turns a repeated header into a list, which its own code then calls ``.split`` on.
    Cameras do repeat headers (``Public`` twice, ``Session`` twice): list headers are joined
    with commas, challenges stay a list, and any other header keeps its first value, as FFmpeg does.
    """
    merged = {}
    for name, value in headers.items():
        if isinstance(value, list) and name not in _REPEATABLE_HEADERS:
            value = ", ".join(value) if name in _LIST_HEADERS else value[0]
        merged[name] = value
    return merged


class RedactingLogger(logging.LoggerAdapter):
    """A logger for aiortsp whose records never carry credentials nor raw peer text.

    Arguments are redacted before the record is made (aiortsp passes raw request text, bytes
    and message objects as ``%s`` arguments), their control characters escaped and their
    length cut (:func:`~dalistream.ingest.limits.printable`); numbers pass through untouched.
    """

    def __init__(self, logger: logging.Logger, secrets: Iterable[str] = ()) -> None:
        super().__init__(logger, {})
        self._secrets = tuple(secrets)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        clean_msg = printable(redact(str(msg), self._secrets))
        clean_args = tuple(self._clean(arg) for arg in args)
        self.logger.log(level, clean_msg, *clean_args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs

    def _clean(self, arg: object) -> object:
        if isinstance(arg, bool | int | float) or arg is None:
            return arg
        text = arg.decode("latin-1") if isinstance(arg, bytes | bytearray) else str(arg)
        return printable(redact(text, self._secrets))


class RtspConnection(RTSPConnection):
    """An aiortsp connection that authenticates with :class:`Authenticator`.

    A rejected or unanswerable challenge makes the request raise
    :class:`~dalistream.ingest.auth.AuthError` instead of aiortsp's generic response error.
    ``ssl_context`` makes it an RTSPS (TLS) connection. Received data is bounded: headers by
    :func:`~dalistream.ingest.limits.parser_overrun`, the rate by ``budget``; a peer that
    breaks a bound, or sends what aiortsp cannot parse, ends the connection with the reason.
    """

    def __init__(
        self,
        host: str,
        port: int,
        credentials: Credentials | None,
        *,
        logger: logging.Logger | logging.LoggerAdapter,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        budget: ReceiveBudget | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # aiortsp keeps username/password to pick its own auth: it gets neither.
        super().__init__(host, port, None, None, logger=logger, ssl=ssl_context, timeout=timeout)
        self._auth = _AiortspAuth(Authenticator(credentials))
        self._budget = budget
        self._clock = clock

    def data_received(self, data: bytes) -> None:
        """aiortsp's dispatch loop, with bounds, and without its raw-data log and stderr traceback."""
        try:
            if self._budget is not None and (over := self._budget.spend(len(data), self._clock())):
                raise RTSPConnectionError(over)
            for message in self.parser.parse(data):
                if message.type == "response":
                    self.on_response(message)
                    request = self.active_requests.get(message.cseq)
                    if request is not None and not request.done():
                        request.set_result(message)
                elif message.type == "binary":
                    self.on_binary(message)
                elif message.type == "request":
                    self.on_request(message)
            if overrun := parser_overrun(self.parser):
                raise RTSPConnectionError(overrun)
        except RTSPConnectionError as exc:
            self._fail(exc)
        except Exception as exc:  # aiortsp's parser trips over what it cannot read: the peer's doing
            error = RTSPConnectionError(f"invalid data received: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._fail(error)

    def _fail(self, error: RTSPConnectionError) -> None:
        self.logger.debug("closing the connection: %s", error)
        if not self.result.done():
            self.result.set_exception(error)
        if self._transport is not None:
            self._transport.close()

    async def prepare(self) -> None:
        """Connect (and shake hands over TLS); a failed handshake says why, e.g. an untrusted certificate."""
        try:
            await super().prepare()
        except RTSPConnectionError as exc:
            cause = exc.__cause__
            if not isinstance(cause, ssl.SSLError):
                raise
            detail = getattr(cause, "verify_message", None) or cause.reason or type(cause).__name__
            raise RTSPConnectionError(f"TLS handshake with {self.host}:{self.port} failed: {cause.reason}: {detail}") from cause

    def handle_401(self, resp: RTSPResponse) -> bool:
        return self._auth.handle_401(resp.headers)

    def on_response(self, response: RTSPResponse) -> None:
        """Every reply passes here before its request sees it: repeated headers are merged."""
        response.headers = merge_repeated_headers(response.headers)
        super().on_response(response)


class _AiortspAuth:
    """Adapts :class:`Authenticator` to the three calls aiortsp's connection makes."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def make_auth(self, method: str, url: str, headers: dict[str, Any]) -> None:
        value = self.authenticator.authorization(method, url)
        if value is not None:
            headers["Authorization"] = value

    def handle_401(self, headers: Mapping[str, Any]) -> bool:
        self.authenticator.challenged(headers.get("www-authenticate"))
        return True

    def handle_ok(self, headers: Mapping[str, Any]) -> None:
        info = headers.get("authentication-info")
        self.authenticator.accepted(info if isinstance(info, str) else None)


def client_ssl_context(*, verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """TLS settings for an ``rtsps://`` camera.

    With ``verify`` the server's certificate must chain to ``ca_file`` (or the system's
    trust store when ``None``) and match the host name; without it any certificate is taken,
    which still encrypts but no longer authenticates the camera.
    """
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
