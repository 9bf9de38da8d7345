"""RTSP authentication, sans-IO: RFC vectors, the challenge parser, the Authenticator's decisions,
the redacting logger, and qop=auth over a real socket against an in-test Digest responder."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl

import pytest
from aiortsp.rtsp.errors import RTSPConnectionError
from hypothesis import given
from hypothesis import strategies as st

from dalistream import config as config_module
from dalistream.ingest.auth import (
    MAX_STALE_RETRIES,
    AuthError,
    Authenticator,
    Challenge,
    ChallengeError,
    Credentials,
    basic_authorization,
    digest_response,
    parse_challenges,
)
from dalistream.ingest.rtsp import RtspSession
from dalistream.ingest.secure_connection import DEFAULT_RTSPS_PORT, RedactingLogger, RtspConnection, credential_secrets, redact

MUFASA_2617 = Credentials("Mufasa", "Circle Of Life")
MUFASA_7616 = Credentials("Mufasa", "Circle of Life")
RFC7616_CHALLENGE = dict(
    realm="http-auth@example.org",
    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    method="GET",
    uri="/dir/index.html",
    qop="auth",
    nc="00000001",
    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
)


def fields(header: str) -> dict[str, str]:
    (challenge,) = parse_challenges(header)  # an Authorization header has the challenge's syntax
    return challenge.params


# --- RFC vectors ------------------------------------------------------------------------------


def test_rfc2617_section_3_5_vector():
    response = digest_response(
        MUFASA_2617,
        algorithm="MD5",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        method="GET",
        uri="/dir/index.html",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm, expected):
    assert digest_response(MUFASA_7616, algorithm=algorithm, **RFC7616_CHALLENGE) == expected


def test_rfc7617_basic_vector_and_utf8():
    assert basic_authorization(Credentials("Aladdin", "open sesame")) == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    assert basic_authorization(Credentials("test", "123\u00a3")) == "Basic dGVzdDoxMjPCow=="  # RFC 7617 §2.1


def test_legacy_no_qop_and_sess_and_auth_int_follow_the_definitions():
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    creds = Credentials("u", "p")
    ha2 = md5("DESCRIBE:rtsp://h/x")
    assert digest_response(creds, algorithm="MD5", realm="r", nonce="n", method="DESCRIBE", uri="rtsp://h/x") == md5(
        f"{md5('u:r:p')}:n:{ha2}"
    )
    sess_ha1 = md5(f"{md5('u:r:p')}:n:c")
    got = digest_response(creds, algorithm="MD5-sess", realm="r", nonce="n", method="DESCRIBE", uri="rtsp://h/x", qop="auth", nc="00000001", cnonce="c")
    assert got == md5(f"{sess_ha1}:n:00000001:c:auth:{ha2}")
    int_ha2 = md5(f"DESCRIBE:rtsp://h/x:{md5('body')}")
    got = digest_response(creds, algorithm="MD5", realm="r", nonce="n", method="DESCRIBE", uri="rtsp://h/x", qop="auth-int", nc="00000001", cnonce="c", body=b"body")
    assert got == md5(f"{md5('u:r:p')}:n:00000001:c:auth-int:{int_ha2}")
    with pytest.raises(AuthError):
        digest_response(creds, algorithm="SHA-1", realm="r", nonce="n", method="M", uri="u")


# --- challenge parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            'Digest realm="GStreamer RTSP Server", nonce="a2d682e3c0721eec"',
            [Challenge("digest", {"realm": "GStreamer RTSP Server", "nonce": "a2d682e3c0721eec"})],
        ),
        (  # RFC 7235 §4.1's example: two challenges, quoted commas and escapes in one header
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple"',
            [
                Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
                Challenge("basic", {"realm": "simple"}),
            ],
        ),
        (  # repeated headers, odd case and spacing, a comma inside a quoted qop list
            ['BASIC Realm = "a, b"', 'digest  NONCE=abc ,qop="auth,auth-int" , ALGORITHM=sha-256'],
            [
                Challenge("basic", {"realm": "a, b"}),
                Challenge("digest", {"nonce": "abc", "qop": "auth,auth-int", "algorithm": "sha-256"}),
            ],
        ),
        ("Negotiate abc==, Basic realm=x", [Challenge("negotiate", {}, "abc=="), Challenge("basic", {"realm": "x"})]),
        (", ,Basic,, ", [Challenge("basic", {})]),
    ],
)
def test_challenges_parse(headers, expected):
    assert parse_challenges(headers) == expected


@pytest.mark.parametrize(
    "header",
    ['realm="x"', 'Basic"x"', 'Digest realm="open', "Digest realm=x nonce=y", "Digest a=1, a=2", "Basic realm=x y=", "Negotiate abc==, x=y",
     'Digest realm="a\r\nX-Injected: 1", nonce="n"', 'Digest realm="a\\\0", nonce="n"'],  # fmt: skip
)
def test_malformed_challenges_raise_challenge_error(header):
    with pytest.raises(ChallengeError):
        parse_challenges(header)


def test_oversized_challenge_is_refused():
    with pytest.raises(ChallengeError):
        parse_challenges('Digest realm="' + "x" * 10_000 + '"')


FRAGMENTS = ["Digest", "Basic", " ", "realm", "nonce", "qop", "auth", "auth-int", '"', "\\", "=", ",", ";", "\t", "\r\n", "\x00", "é", "algorithm", "SHA-256", "MD5-sess", "stale", "true", "opaque", "x"]
header_text = st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join)


@given(st.one_of(header_text, st.text(max_size=80), st.lists(st.text(max_size=30), max_size=3)))
def test_hostile_challenges_raise_only_our_errors(headers):
    try:
        challenges = parse_challenges(headers)
    except ChallengeError:
        return
    assert all(c.scheme == c.scheme.lower() and all(k == k.lower() for k in c.params) for c in challenges)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Well-formed challenges with hostile contents: known and unknown schemes, parameters and values
# (quotes, backslashes, commas, control characters and non-ASCII inside quoted strings).
_text = st.text(st.one_of(st.sampled_from('"\\,=; \té'), st.characters(exclude_categories=("Cc", "Cs"))), max_size=12)


def _value(*known: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known or ("v",)), _text).map(_quoted)


_challenge = st.builds(
    lambda scheme, params: " ".join([scheme, ", ".join(f"{name}={value}" for name, value in params.items())]).strip(),
    st.sampled_from(["Digest", "Digest", "digest", "Basic", "Negotiate"]),
    st.fixed_dictionaries(
        {"nonce": _value("n")},
        optional={
            "realm": _value("r", "r\r\nX-Injected: 1", "\0"),
            "qop": _value("auth", "auth-int", "auth,auth-int", "x"),
            "algorithm": _value("MD5", "md5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256"),
            "stale": _value("true", "false"),
            "opaque": _value(),
            "x": _value(),
        },
    ),
)
_challenges = st.lists(_challenge, min_size=1, max_size=3).map(", ".join)
HOSTILE = st.one_of(header_text, st.lists(header_text, max_size=3), _challenges, st.lists(_challenges, min_size=1, max_size=2))


@given(HOSTILE)
def test_authenticator_on_hostile_challenges_raises_only_auth_error(headers):
    """Anything but AuthError escapes nowhere; an answered challenge gives a header that parses
    back to one offered challenge's realm and nonce, with the response RFC 7616 computes."""
    auth = Authenticator(Credentials("user", "pw"), cnonce=lambda: "c")
    try:
        auth.challenged(headers)
    except AuthError as exc:
        assert "pw" not in str(exc).replace("(401)", "")
        return
    header = auth.authorization("DESCRIBE", "rtsp://h/x")
    assert header is not None and not any(c in header for c in "\r\n\0"), header
    if header.startswith("Basic "):
        assert header == basic_authorization(Credentials("user", "pw"))
        return
    mine = fields(header)
    offered = [c.params for c in parse_challenges(headers) if c.scheme == "digest"]
    assert any((p.get("realm", ""), p["nonce"]) == (mine["realm"], mine["nonce"]) for p in offered if "nonce" in p)
    assert mine["username"] == "user" and mine["uri"] == "rtsp://h/x"
    assert mine["response"] == digest_response(
        Credentials("user", "pw"), algorithm=mine["algorithm"], realm=mine["realm"], nonce=mine["nonce"],
        method="DESCRIBE", uri="rtsp://h/x", qop=mine.get("qop"), nc=mine.get("nc", ""), cnonce=mine.get("cnonce", ""),
    )  # fmt: skip


# --- the Authenticator's decisions --------------------------------------------------------------


def test_digest_qop_auth_counts_nonces_and_verifies():
    cnonces = iter(["c1", "c2", "c3"])
    auth = Authenticator(MUFASA_7616, cnonce=lambda: next(cnonces))
    assert auth.authorization("OPTIONS", "rtsp://h/x") is None
    auth.challenged('Digest realm="r", nonce="n1", qop="auth-int, auth", opaque="o"')
    first = fields(auth.authorization("DESCRIBE", "rtsp://h/x"))
    assert first["nc"] == "00000001" and first["cnonce"] == "c1" and first["qop"] == "auth" and first["opaque"] == "o"
    assert first["response"] == digest_response(
        MUFASA_7616, algorithm="MD5", realm="r", nonce="n1", method="DESCRIBE", uri="rtsp://h/x", qop="auth", nc="00000001", cnonce="c1"
    )
    auth.accepted()
    second = fields(auth.authorization("SETUP", "rtsp://h/x/track1"))
    assert second["nc"] == "00000002" and second["cnonce"] == "c2" and second["uri"] == "rtsp://h/x/track1"
    auth.accepted('nextnonce="n2"')
    third = fields(auth.authorization("PLAY", "rtsp://h/x"))
    assert third["nonce"] == "n2" and third["nc"] == "00000001"


def test_strongest_scheme_wins():
    auth = Authenticator(MUFASA_7616)
    auth.challenged(['Basic realm="r"', 'Digest realm="r", nonce="a", algorithm=MD5', 'Digest realm="r", nonce="b", algorithm=SHA-256'])
    header = fields(auth.authorization("DESCRIBE", "rtsp://h/x"))
    assert header["algorithm"] == "SHA-256" and header["nonce"] == "b"
    basic_only = Authenticator(MUFASA_7616)
    basic_only.challenged(['Digest realm="r", nonce="a", algorithm=SHA-512-256', 'Basic realm="r"'])
    assert basic_only.authorization("DESCRIBE", "rtsp://h/x").startswith("Basic ")


def test_rejected_credentials_raise_auth_error_without_secrets():
    auth = Authenticator(Credentials("zorro-user", "s3cret-pw"))
    auth.challenged('Digest realm="r", nonce="a"')
    auth.authorization("DESCRIBE", "rtsp://h/x")
    with pytest.raises(AuthError, match=r"authentication failed \(401\)") as caught:
        auth.challenged('Digest realm="r", nonce="b"')
    assert "s3cret-pw" not in str(caught.value) and "zorro-user" not in str(caught.value)


def test_stale_nonce_is_retried_a_bounded_number_of_times():
    auth = Authenticator(MUFASA_7616)
    auth.challenged('Digest realm="r", nonce="n0"')
    for i in range(MAX_STALE_RETRIES):
        auth.authorization("DESCRIBE", "rtsp://h/x")
        auth.challenged(f'Digest realm="r", nonce="n{i + 1}", stale=TRUE')
        assert fields(auth.authorization("DESCRIBE", "rtsp://h/x"))["nonce"] == f"n{i + 1}"
    with pytest.raises(AuthError):
        auth.challenged('Digest realm="r", nonce="again", stale=true')
    auth.accepted()  # success resets the stale budget
    auth.authorization("DESCRIBE", "rtsp://h/x")
    auth.challenged('Digest realm="r", nonce="fresh", stale=true')


@pytest.mark.parametrize(
    ("credentials", "headers", "message"),
    [
        (None, 'Basic realm="r"', "no credentials are configured"),
        (MUFASA_7616, None, "without a WWW-Authenticate"),
        (MUFASA_7616, 'Negotiate abc, Bearer realm="r"', "offered: bearer, negotiate"),
        (MUFASA_7616, 'Digest realm="r", nonce="n", qop="auth-conf"', "offered: digest"),
        (MUFASA_7616, 'Digest realm="r"', "offered: digest"),  # no nonce
    ],
)
def test_unanswerable_challenges(credentials, headers, message):
    with pytest.raises(AuthError, match=message):
        Authenticator(credentials).challenged(headers)


def test_credentials_hide_the_password():
    creds = Credentials("alice", "pw-xyz")
    assert "pw-xyz" not in repr(creds) and "pw-xyz" not in str(creds)


def test_digest_quotes_user_names():
    auth = Authenticator(Credentials('we"ird\\user', "p"))
    auth.challenged('Digest realm="r", nonce="n"')
    assert fields(auth.authorization("DESCRIBE", "rtsp://h/x"))["username"] == 'we"ird\\user'


# --- redaction ----------------------------------------------------------------------------------


def test_redacting_logger_strips_authorization_and_secrets(caplog):
    creds = Credentials("alice", "pa:ss")
    logger = RedactingLogger(logging.getLogger("test.redact"), credential_secrets(creds))
    request = f"DESCRIBE rtsp://h/x RTSP/1.0\r\nCSeq: 3\r\nAuthorization: {basic_authorization(creds)}\r\n\r\n"
    with caplog.at_level(logging.DEBUG, logger="test.redact"):
        logger.debug(">>> sending msg:\n%s\n", request)
        logger.debug("BINARY %s bytes: %s", 7, b"x pa:ss y")
        logger.info("error: %s", ValueError("alice:pa:ss"))
    text = caplog.text
    assert "pa:ss" not in text and basic_authorization(creds) not in text
    assert "Authorization: ***" in text and "BINARY 7 bytes" in text
    assert redact("authorization:Digest username=\"x\"") == "authorization: ***"


# --- qop=auth over a socket -------------------------------------------------------------------


class DigestQopResponder(asyncio.Protocol):
    """A tiny RTSP server: answers 401 with a qop=auth challenge, then checks each Authorization
    header per RFC 7616 (response, nc increasing, cnonce present) before answering 200."""

    REALM, NONCE, OPAQUE = "fake-realm", "f4k3n0nc3", "0p4qu3"

    def __init__(self, credentials: Credentials, verified: list[str]) -> None:
        self.credentials = credentials
        self.verified = verified
        self.buffer = b""
        self.last_nc = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            lines = head.decode().split("\r\n")
            method, uri, _ = lines[0].split(" ")
            headers = dict(line.split(": ", 1) for line in lines[1:])
            self.answer(method, uri, headers)

    def answer(self, method: str, uri: str, headers: dict[str, str]) -> None:
        cseq = headers["CSeq"]
        authorization = headers.get("Authorization")
        if authorization is None or not self.valid(method, uri, authorization):
            challenge = f'Digest realm="{self.REALM}", nonce="{self.NONCE}", qop="auth", opaque="{self.OPAQUE}", algorithm=MD5'
            self.transport.write(f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\nWWW-Authenticate: {challenge}\r\n\r\n".encode())
            return
        self.verified.append(method)
        body = b"v=0\r\n" if method == "DESCRIBE" else b""
        extra = f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n" if body else ""
        self.transport.write(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: OPTIONS, DESCRIBE\r\n{extra}\r\n".encode() + body)

    def valid(self, method: str, uri: str, authorization: str) -> bool:
        assert authorization.startswith("Digest ")
        got = fields(authorization)
        nc = int(got["nc"], 16)
        expected = digest_response(
            self.credentials, algorithm="MD5", realm=self.REALM, nonce=self.NONCE, method=method, uri=uri,
            qop="auth", nc=got["nc"], cnonce=got["cnonce"],
        )  # fmt: skip
        ok = (
            got["response"] == expected and got["qop"] == "auth" and got["opaque"] == self.OPAQUE
            and got["uri"] == uri and nc > self.last_nc and len(got["cnonce"]) >= 8
        )  # fmt: skip
        self.last_nc = max(self.last_nc, nc)
        return ok


async def talk_to_responder(server_creds: Credentials, client_creds: Credentials) -> list[str]:
    verified: list[str] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: DigestQopResponder(server_creds, verified), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with RtspConnection("127.0.0.1", port, client_creds, logger=logging.getLogger("test.qop"), timeout=5) as conn:
            await conn.send_request("OPTIONS", f"rtsp://127.0.0.1:{port}/cam")
            response = await conn.send_request("DESCRIBE", f"rtsp://127.0.0.1:{port}/cam", headers={"Accept": "application/sdp"})
            assert response.status == 200
    finally:
        server.close()
        await server.wait_closed()
    return verified


def test_qop_auth_over_a_socket():
    creds = Credentials("qop-user", "qop pass\u00e9")
    assert asyncio.run(talk_to_responder(creds, creds)) == ["OPTIONS", "DESCRIBE"]


def test_qop_auth_wrong_password_is_auth_error_over_a_socket():
    with pytest.raises(AuthError, match=r"authentication failed \(401\)"):
        asyncio.run(talk_to_responder(Credentials("qop-user", "right"), Credentials("qop-user", "wrong")))


# --- configuration ------------------------------------------------------------------------------


def camera_config(**fields: object) -> config_module.CameraConfig:
    config = config_module.from_mapping({"camera": [{"id": "c", "url": "rtsp://h/x", **fields}]})
    return config.camera[0]


def test_credentials_from_url_are_percent_decoded():
    assert camera_config(url="rtsp://us%40er:p%3Aw%2F%25@h/x").credentials() == ("us@er", "p:w/%")
    assert camera_config(url="rtsp://h/x").credentials() is None


def test_credentials_from_config_and_environment(monkeypatch):
    monkeypatch.setenv("CAM_PW", "from-env")
    camera = camera_config(url="rtsp://urluser:urlpw@h/x", username="cfguser", password_env="CAM_PW")
    assert camera.credentials() == ("cfguser", "from-env")
    assert camera_config(url="rtsp://urluser@h/x", password_env="CAM_PW").credentials() == ("urluser", "from-env")


def test_rtsps_config_keeps_the_ca_file_and_verify_setting(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    camera = camera_config(url="rtsps://h/x", tls_ca_file=str(ca), tls_verify=False)
    assert (camera.tls_ca_file, camera.tls_verify) == (str(ca), False)


@pytest.mark.parametrize(
    ("settings", "refused"),
    [({}, True), ({"tls_verify": False}, False), ("ca", False)],
    ids=["verify-by-default", "tls_verify-false", "tls_ca_file"],
)
def test_tls_handshake_with_a_self_signed_camera_follows_the_settings(tls_files, settings, refused):
    """A real TLS server on loopback with a self-signed certificate: refused unless the camera's
    settings trust it (its CA file) or waive the check (``tls_verify = false``)."""
    cert, key = tls_files
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    async def handshake() -> str:
        server = await asyncio.start_server(lambda _, writer: None, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        fields = {"tls_ca_file": str(cert)} if settings == "ca" else settings
        session = RtspSession.for_camera(camera_config(url=f"rtsps://127.0.0.1:{port}/x", **fields), "tcp")
        connection = RtspConnection("127.0.0.1", port, None, logger=logging.getLogger("test"), timeout=5.0, ssl_context=session.ssl_context)
        try:
            await connection.prepare()
            return "shook hands"
        except RTSPConnectionError as exc:
            return str(exc)
        finally:
            connection.close()
            server.close()

    outcome = asyncio.run(handshake())
    if refused:
        assert "CERTIFICATE_VERIFY_FAILED" in outcome and "self-signed" in outcome, outcome
    else:
        assert outcome == "shook hands"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"username": "u", "password_env": "DALISTREAM_SURELY_UNSET_VAR"}, "camera[0].password_env: environment variable DALISTREAM_SURELY_UNSET_VAR is not set"),
        ({"password_env": "HOME"}, "camera[0].password_env: needs a user name"),
        ({"username": "u", "password_env": "NOT-A-NAME"}, "camera[0].password_env: must be an environment variable name"),
        ({"tls_ca_file": "/etc/hostname"}, "camera[0].tls_ca_file: only used with rtsps://"),
        ({"url": "rtsps://h/x", "tls_ca_file": "/nonexistent.pem"}, "camera[0].tls_ca_file: no such file"),
        ({"url": "http://h/x"}, "camera[0].url: must be rtsp://"),
        ({"password": "plain"}, "camera[0].password: unknown key"),
    ],
)
def test_credential_config_errors_name_the_key(fields, message):
    with pytest.raises(config_module.ConfigError) as caught:
        camera_config(**fields)
    assert message in str(caught.value)


def test_session_defaults_rtsps_port_and_takes_url_credentials():
    session = RtspSession("rtsps://a%20b:c%3Ad@h/x", "tcp", timeout_s=1.0)
    assert session.port == DEFAULT_RTSPS_PORT and session.ssl_context is not None
    assert session.credentials == Credentials("a b", "c:d") and "c:d" not in session.media_url
    plain = RtspSession.for_camera(camera_config(url="rtsp://h/x"), "tcp")
    assert plain.port == 554 and plain.ssl_context is None and plain.credentials is None
