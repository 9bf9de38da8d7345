"""Bounds on peers: header size, receive rate, and the text of theirs we log."""

from __future__ import annotations

from aiortsp.rtsp.parser import RTSPParser

from dalistream.ingest.limits import MAX_HEADER_BYTES, MAX_HEADER_LINES, ReceiveBudget, parser_overrun, printable


def test_printable_escapes_controls_and_cuts() -> None:
    assert printable("ok\x1b[31mred\x07\r\n\x9b") == "ok\\x1b[31mred\\x07\\x0d\\x0a\\x9b"
    assert printable("é ü 日本") == "é ü 日本"
    assert printable("z" * 2000, limit=10) == "z" * 10 + "… [1990 more characters cut]"


def test_an_endless_header_line_or_too_many_lines_is_an_overrun() -> None:
    parser = RTSPParser()
    list(parser.parse(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nX-Long: "))
    assert parser_overrun(parser) is None
    list(parser.parse(b"a" * MAX_HEADER_BYTES))
    assert parser_overrun(parser) == "RTSP message headers longer than 64 KiB"

    parser = RTSPParser()
    list(parser.parse(b"RTSP/1.0 200 OK\r\n" + b"X: y\r\n" * (MAX_HEADER_LINES + 1)))
    assert parser_overrun(parser) == f"more than {MAX_HEADER_LINES} RTSP header lines"

    parser = RTSPParser()
    assert [m.status for m in parser.parse(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n")] == [200]
    assert parser_overrun(parser) is None  # a whole message leaves nothing pending


def test_receive_budget_per_second() -> None:
    budget = ReceiveBudget(1000)
    assert budget.spend(600, 10.0) is None
    assert budget.spend(600, 10.5) == "receiving over 0.008 Mbit/s (the camera's max_receive_mbps)"
    assert budget.spend(900, 11.0) is None  # a new window
