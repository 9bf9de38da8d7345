"""Reply quirks real cameras send, resolved before aiortsp reads the headers."""

from __future__ import annotations

from dalistream.ingest.secure_connection import merge_repeated_headers


def test_repeated_headers_get_the_type_aiortsp_expects():
    headers = {
        "cseq": "3",
        "public": ["OPTIONS, DESCRIBE", "SETUP, PLAY"],
        "session": ["12345;timeout=60", "12345;timeout=60"],
        "www-authenticate": ['Digest realm="cam", nonce="1"', 'Basic realm="cam"'],
        "content-base": ["rtsp://cam/a/", "rtsp://cam/b/"],
    }
    assert merge_repeated_headers(headers) == {
        "cseq": "3",
        "public": "OPTIONS, DESCRIBE, SETUP, PLAY",  # a list header: joined
        "session": "12345;timeout=60",  # any other: the first value, as FFmpeg takes it
        "www-authenticate": ['Digest realm="cam", nonce="1"', 'Basic realm="cam"'],  # separate challenges
        "content-base": "rtsp://cam/a/",
    }
    assert headers["public"] == ["OPTIONS, DESCRIBE", "SETUP, PLAY"]  # the input is left alone
