"""RTSP client authentication, sans-IO: Basic (RFC 7617) and Digest (RFC 7616 / RFC 2617).

:class:`Authenticator` is fed the server's answers and says what to send next; it never
touches a socket. The connection calls :meth:`Authenticator.authorization` before each request,
:meth:`Authenticator.challenged` on a ``401 Unauthorized`` (which raises :class:`AuthError` when
retrying cannot help) and :meth:`Authenticator.accepted` on any other answer.

Digest supports MD5, SHA-256 and their ``-sess`` variants, ``qop=auth`` and ``qop=auth-int``
with a nonce count and client nonce, the legacy no-qop form (RFC 2069, which GStreamer's
server and many cameras use), ``opaque``, ``stale=true`` (a fresh nonce, not a wrong password)
and ``nextnonce`` in ``Authentication-Info``. The strongest offered scheme wins: Digest SHA-256,
then Digest MD5, then Basic.

Secrets stay inside: :class:`Credentials` hides the password from ``repr``, and no message of
:class:`AuthError` contains the user name or the password.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from base64 import b64encode
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from aiortsp.rtsp.errors import RTSPError

MAX_STALE_RETRIES = 2
"""Consecutive ``stale=true`` challenges accepted before giving up (a server that keeps
declaring every nonce stale would otherwise loop forever)."""

MAX_CHALLENGE_CHARS = 8192
"""Longest ``WWW-Authenticate`` text parsed; longer ones are rejected as malformed."""

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
_PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")  # best first

# RFC 9110 §5.6: token, quoted-string, and RFC 7235's token68.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)"')  # no control but HTAB
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*(?=[ \t]*(?:,|$))")
_OWS = re.compile(r"[ \t]*")
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)


class AuthError(RTSPError):
    """The server wants credentials we cannot satisfy: none configured, rejected, or a challenge
    we cannot answer. Retrying at once would only be rejected again, so callers back off.

    The message never contains the user name or the password.
    """

    type = "unauthorized"


class ChallengeError(AuthError):
    """A ``WWW-Authenticate`` header that does not parse (RFC 7235 §4.1)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password; ``repr`` and ``str`` never show the password."""

    username: str
    password: str = field(repr=False)

    def __str__(self) -> str:
        return f"{self.username}:***"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge from a ``WWW-Authenticate`` header.

    ``scheme`` is lower-case; parameter names are lower-case and values unquoted.
    """

    scheme: str
    params: dict[str, str]
    token68: str | None = None


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Parse one or more ``WWW-Authenticate`` header values into their challenges.

    One header may carry several comma-separated challenges (RFC 7235 §4.1), and a response may
    repeat the header. Raises :class:`ChallengeError` on anything that is not a valid challenge list.
    """
    values = [headers] if isinstance(headers, str) else list(headers)
    challenges: list[Challenge] = []
    for value in values:
        if not isinstance(value, str):
            raise ChallengeError("WWW-Authenticate header is not text")
        if len(value) > MAX_CHALLENGE_CHARS:
            raise ChallengeError(f"WWW-Authenticate header longer than {MAX_CHALLENGE_CHARS} characters")
        challenges.extend(_parse_header(value))
    return challenges


def _parse_header(text: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    scheme: str | None = None
    params: dict[str, str] = {}
    token68: str | None = None
    pos = 0
    while True:
        pos = _skip_list_separators(text, pos)
        if pos >= len(text):
            break
        name = _TOKEN.match(text, pos)
        if name is None:
            raise ChallengeError(f"unexpected character {text[pos]!r} at {pos} in WWW-Authenticate")
        pos = _OWS.match(text, name.end()).end()
        if pos < len(text) and text[pos] == "=":
            if scheme is None or token68 is not None:
                raise ChallengeError(f"WWW-Authenticate parameter without a scheme at {name.start()}")
            key = name.group().lower()
            if key in params:
                raise ChallengeError(f"WWW-Authenticate repeats parameter {key!r}")
            params[key], pos = _parse_value(text, _OWS.match(text, pos + 1).end())
            pos = _OWS.match(text, pos).end()
            if pos < len(text) and text[pos] != ",":
                raise ChallengeError(f"expected ',' at {pos} in WWW-Authenticate")
            continue
        # A token not followed by "=" starts the next challenge.
        if scheme is not None:
            challenges.append(Challenge(scheme, params, token68))
        scheme, params, token68 = name.group().lower(), {}, None
        if pos == name.end():
            if pos < len(text) and text[pos] != ",":
                raise ChallengeError(f"expected ',' or a space after the scheme at {pos} in WWW-Authenticate")
        elif (blob := _TOKEN68.match(text, pos)) is not None:
            token68, pos = blob.group(), blob.end()
    if scheme is not None:
        challenges.append(Challenge(scheme, params, token68))
    return challenges


def _skip_list_separators(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in ", \t":
        pos += 1
    return pos


def _parse_value(text: str, pos: int) -> tuple[str, int]:
    quoted = _QUOTED.match(text, pos)
    if quoted is not None:
        return _UNESCAPE.sub(r"\1", quoted.group(1)), quoted.end()
    if pos < len(text) and text[pos] == '"':
        raise ChallengeError("unterminated quoted string, or a control character in one, in WWW-Authenticate")
    token = _TOKEN.match(text, pos)
    if token is None:
        raise ChallengeError(f"missing parameter value at {pos} in WWW-Authenticate")
    return token.group(), token.end()


def basic_authorization(credentials: Credentials) -> str:
    """The ``Authorization`` value for Basic (RFC 7617, UTF-8 user-pass)."""
    user_pass = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + b64encode(user_pass).decode("ascii")


def digest_response(
    credentials: Credentials,
    *,
    algorithm: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: str = "",
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The ``response`` value of Digest (RFC 7616 §3.4.1; without ``qop``, RFC 2069's form).

    ``algorithm`` is ``MD5``, ``SHA-256`` or either with ``-sess``; ``qop`` is ``None``,
    ``"auth"`` or ``"auth-int"`` (which hashes ``body``).
    """
    upper = algorithm.upper()
    base, sess = (upper[:-5], True) if upper.endswith("-SESS") else (upper, False)
    if base not in _HASHES:
        raise AuthError(f"unsupported Digest algorithm {algorithm!r}")
    h = _HASHES[base]

    def kd(secret: str, data: str) -> str:
        return h(f"{secret}:{data}".encode())

    ha1 = h(f"{credentials.username}:{realm}:{credentials.password}".encode())
    if sess:
        ha1 = h(f"{ha1}:{nonce}:{cnonce}".encode())
    if qop == "auth-int":
        ha2 = h(f"{method}:{uri}:{h(body)}".encode())
    elif qop in (None, "auth"):
        ha2 = h(f"{method}:{uri}".encode())
    else:
        raise AuthError(f"unsupported Digest qop {qop!r}")
    if qop is None:
        return kd(ha1, f"{nonce}:{ha2}")
    return kd(ha1, f"{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _new_cnonce() -> str:
    return secrets.token_hex(16)


@dataclass(slots=True)
class _DigestState:
    algorithm: str
    realm: str
    nonce: str
    opaque: str | None
    qop: str | None
    nc: int = 0


class Authenticator:
    """Answers an RTSP server's authentication challenges for one connection.

    Without credentials, a challenge raises :class:`AuthError` at once. With them, the first
    challenge is answered; a second ``401`` after credentials were sent means they were
    rejected (:class:`AuthError`), unless the server only declared the nonce stale.
    ``cnonce`` makes the client nonce deterministic for tests.
    """

    def __init__(self, credentials: Credentials | None, *, cnonce: Callable[[], str] = _new_cnonce) -> None:
        self._credentials = credentials
        self._cnonce = cnonce
        self._scheme: str | None = None  # "basic" or "digest" once challenged
        self._digest: _DigestState | None = None
        self._sent = False  # the last request carried our credentials
        self._stale_retries = 0

    @property
    def scheme(self) -> str | None:
        """``"basic"`` or ``"digest"`` once a challenge chose one, else ``None``."""
        return self._scheme

    def authorization(self, method: str, uri: str, body: bytes = b"") -> str | None:
        """The ``Authorization`` header value for a request, or ``None`` before any challenge."""
        if self._credentials is None or self._scheme is None:
            self._sent = False
            return None
        self._sent = True
        if self._scheme == "basic":
            return basic_authorization(self._credentials)
        state = self._digest
        params: list[tuple[str, str]] = [
            ("username", _quote(self._credentials.username)),
            ("realm", _quote(state.realm)),
            ("nonce", _quote(state.nonce)),
            ("uri", _quote(uri)),
        ]
        if state.qop is None:
            response = digest_response(
                self._credentials, algorithm=state.algorithm, realm=state.realm, nonce=state.nonce, method=method, uri=uri
            )
        else:
            state.nc += 1
            nc = f"{state.nc:08x}"
            cnonce = self._cnonce()
            response = digest_response(
                self._credentials,
                algorithm=state.algorithm,
                realm=state.realm,
                nonce=state.nonce,
                method=method,
                uri=uri,
                qop=state.qop,
                nc=nc,
                cnonce=cnonce,
                body=body,
            )
            params += [("qop", state.qop), ("nc", nc), ("cnonce", _quote(cnonce))]
        params += [("response", _quote(response)), ("algorithm", state.algorithm)]
        if state.opaque is not None:
            params.append(("opaque", _quote(state.opaque)))
        return "Digest " + ", ".join(f"{key}={value}" for key, value in params)

    def challenged(self, www_authenticate: str | Iterable[str] | None) -> None:
        """Take a ``401``'s ``WWW-Authenticate`` header(s); returning means: retry the request.

        Raises :class:`AuthError` when no credentials are configured, when the credentials were
        just rejected, or when no offered scheme is supported.
        """
        if self._credentials is None:
            raise AuthError("server requires authentication (401) but no credentials are configured")
        if not www_authenticate:
            raise ChallengeError("401 without a WWW-Authenticate header")
        challenges = parse_challenges(www_authenticate)
        digest = _best_digest(challenges)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if digest is None and basic is None:
            offered = ", ".join(sorted({c.scheme for c in challenges})) or "none"
            raise AuthError(f"server offers no supported authentication scheme (offered: {offered})")
        if self._sent:
            stale = digest is not None and self._scheme == "digest" and digest.params.get("stale", "").lower() == "true"
            if not stale or self._stale_retries >= MAX_STALE_RETRIES:
                raise AuthError(f"authentication failed (401): {self._scheme} credentials rejected")
            self._stale_retries += 1
        if digest is not None:
            self._scheme = "digest"
            self._digest = _digest_state(digest)
        else:
            self._scheme = "basic"
            self._digest = None

    def accepted(self, authentication_info: str | None = None) -> None:
        """A request was answered with anything but 401; ``Authentication-Info`` may rotate the nonce."""
        self._sent = False
        self._stale_retries = 0
        if self._digest is None or not authentication_info:
            return
        try:
            (info,) = parse_challenges(f"Digest {authentication_info}")
        except (ChallengeError, ValueError):
            return  # a garbled optional header: keep the current nonce, the server may re-challenge
        if next_nonce := info.params.get("nextnonce"):
            self._digest.nonce = next_nonce
            self._digest.nc = 0


def _best_digest(challenges: list[Challenge]) -> Challenge | None:
    """The Digest challenge with the strongest algorithm we can answer, if any."""
    ranked = []
    for challenge in challenges:
        algorithm = challenge.params.get("algorithm", "MD5").upper()
        usable = (
            challenge.scheme == "digest"
            and algorithm in _PREFERENCE
            and "nonce" in challenge.params
            and _choose_qop(challenge.params.get("qop")) is not False
        )
        if usable:
            ranked.append((_PREFERENCE.index(algorithm), challenge))
    return min(ranked, key=lambda pair: pair[0])[1] if ranked else None


def _choose_qop(offered: str | None) -> str | None | bool:
    """``"auth"`` if offered, else ``"auth-int"``, ``None`` without qop, ``False`` if none is usable."""
    if offered is None:
        return None
    options = {option.strip().lower() for option in offered.split(",")}
    for qop in ("auth", "auth-int"):
        if qop in options:
            return qop
    return False


def _digest_state(challenge: Challenge) -> _DigestState:
    params = challenge.params
    qop = _choose_qop(params.get("qop"))
    assert qop is not False  # _best_digest only picks challenges with a usable qop
    return _DigestState(
        algorithm=params.get("algorithm", "MD5").upper(),
        realm=params.get("realm", ""),
        nonce=params["nonce"],
        opaque=params.get("opaque"),
        qop=qop,
    )
