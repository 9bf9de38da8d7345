"""The per-camera connection state machine, driven with plain times and a fixed random source."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dalistream.ingest.connection_state import (
    Connect,
    ConnectionMachine,
    ConnectionPolicy,
    Disconnect,
    Emit,
    KeepAlive,
    State,
)

POLICY = ConnectionPolicy(no_data_timeout_s=5.0, backoff_first_s=0.5, backoff_cap_s=4.0, backoff_reset_s=10.0, jitter=0.2)


def machine(policy: ConnectionPolicy = POLICY, draw: float = 0.0) -> ConnectionMachine:
    return ConnectionMachine(policy, lambda: draw)


def events(actions) -> list[tuple[str, dict]]:
    return [(a.event, a.fields) for a in actions if isinstance(a, Emit)]


def play(m: ConnectionMachine, now: float, timeout_s: float = 60.0) -> None:
    m.connected(now, session_timeout_s=timeout_s, codec="H264")
    m.packet(now)


def test_start_connects_then_connected_event_carries_transport_and_fields():
    m = machine()
    assert m.start() == [Connect("tcp")]
    assert m.state is State.CONNECTING
    assert m.deadline() == math.inf  # the RTSP request timeout bounds connecting
    actions = m.connected(0.0, session_timeout_s=60.0, codec="H264")
    assert events(actions) == [("connected", {"transport": "tcp", "codec": "H264"})]
    assert m.state is State.PLAYING


def test_refused_connection_backs_off_exponentially_up_to_the_cap_then_retries():
    m = machine()
    m.start()
    now = 0.0
    delays = []
    for attempt in range(1, 8):
        actions = m.failed(now, "RTSPConnectionError: refused")
        assert events(actions) == [
            ("disconnected", {"reason": "RTSPConnectionError: refused"}),
            ("reconnecting", {"attempt": attempt, "delay_s": pytest.approx(m.deadline() - now), "transport": "tcp"}),
        ]
        delay = m.deadline() - now
        delays.append(delay)
        assert m.tick(now + delay - 0.01) == []
        now += delay
        assert m.tick(now) == [Connect("tcp")]
    assert delays == pytest.approx([0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0])


def test_jitter_only_shortens_the_delay():
    low = machine(draw=0.999)
    low.start()
    low.failed(0.0, "x")
    assert low.deadline() == pytest.approx(0.5 * (1 - 0.2 * 0.999))
    for _ in range(10):
        now = low.deadline()
        low.tick(now)
        low.failed(now, "x")
    assert low.deadline() - now == pytest.approx(4.0 * (1 - 0.2 * 0.999))


@given(st.integers(1, 200), st.floats(0.0, 0.999999))
def test_backoff_is_within_bounds(attempt: int, uniform: float):
    delay = POLICY.backoff_s(attempt, uniform)
    assert POLICY.backoff_first_s * 0.8 <= delay <= POLICY.backoff_cap_s
    assert delay <= POLICY.backoff_first_s * 2 ** (attempt - 1) + 1e-9


def test_no_data_timeout_disconnects_and_reconnects():
    m = machine()
    m.start()
    play(m, 0.0)
    for t in range(1, 40):
        m.packet(t * 0.1)
    last = 3.9
    assert m.deadline() == pytest.approx(last + 5.0)
    assert m.tick(last + 4.9) == []
    actions = m.tick(last + 5.0)
    assert actions[0] == Disconnect("no data for 5 s")
    assert events(actions)[0] == ("disconnected", {"reason": "no data for 5 s"})
    assert m.state is State.BACKING_OFF
    assert m.tick(m.deadline()) == [Connect("tcp")]


def test_keepalive_at_half_the_session_timeout():
    m = machine()
    m.start()
    play(m, 0.0, timeout_s=8.0)
    sent = []
    t = 0.0
    while t < 17.0:
        t = round(t + 0.5, 6)
        m.packet(t)
        if KeepAlive() in m.tick(t):
            sent.append(t)
    assert sent == [4.0, 8.0, 12.0, 16.0]


def test_keepalive_deadline_without_packets_is_the_earlier_of_both():
    m = machine()
    m.start()
    play(m, 0.0, timeout_s=4.0)
    assert m.deadline() == pytest.approx(2.0)
    assert m.tick(2.0) == [KeepAlive()]
    assert m.deadline() == pytest.approx(4.0)


def test_461_on_udp_falls_back_to_tcp_for_good():
    m = machine(ConnectionPolicy(transport="udp", backoff_cap_s=4.0))
    assert m.start() == [Connect("udp")]
    actions = m.failed(0.0, "UnsupportedTransportError: 461", unsupported_transport=True)
    assert events(actions)[1][1]["transport"] == "tcp"
    assert m.tick(m.deadline()) == [Connect("tcp")]
    m.failed(10.0, "refused")
    assert m.tick(m.deadline()) == [Connect("tcp")]


def test_461_on_tcp_is_an_ordinary_failure():
    m = machine()
    m.start()
    m.failed(0.0, "461", unsupported_transport=True)
    assert m.tick(m.deadline()) == [Connect("tcp")]


def test_udp_that_never_receives_falls_back_to_tcp():
    m = machine(ConnectionPolicy(transport="udp"))
    m.start()
    m.connected(0.0, session_timeout_s=60.0)
    actions = m.tick(5.0)
    assert actions[0] == Disconnect("no UDP packets in 5 s")
    assert events(actions)[1][1]["transport"] == "tcp"
    assert m.tick(m.deadline()) == [Connect("tcp")]


def test_udp_that_received_then_stalled_stays_on_udp():
    m = machine(ConnectionPolicy(transport="udp"))
    m.start()
    play(m, 0.0)
    actions = m.tick(5.0)
    assert actions[0] == Disconnect("no data for 5 s")
    assert m.tick(m.deadline()) == [Connect("udp")]


def test_healthy_session_resets_the_backoff():
    m = machine()
    m.start()
    for _ in range(3):
        m.failed(0.0, "refused")
        m.tick(m.deadline())
    assert m.attempt == 3
    play(m, 100.0)
    for t in range(101, 111):
        m.packet(float(t))
    actions = m.failed(111.0, "closed by server")
    assert events(actions)[1][1]["attempt"] == 1
    assert m.deadline() == pytest.approx(111.5)


def test_short_session_does_not_reset_the_backoff():
    m = machine()
    m.start()
    m.failed(0.0, "refused")
    m.tick(m.deadline())
    play(m, 10.0)
    m.packet(12.0)  # streamed 2 s < backoff_reset_s
    actions = m.failed(12.0, "closed by server")
    assert events(actions)[1][1]["attempt"] == 2


def test_packets_outside_playing_are_ignored_and_misuse_raises():
    m = machine()
    m.packet(1.0)
    assert m.tick(100.0) == []
    with pytest.raises(RuntimeError, match=r"^failed\(\) in state idle$"):
        m.failed(0.0, "x")
    with pytest.raises(RuntimeError, match=r"^connected\(\) in state idle$"):
        m.connected(0.0, session_timeout_s=60.0)
    m.start()
    with pytest.raises(RuntimeError, match=r"^start\(\) in state connecting$"):
        m.start()


def test_zero_session_timeout_means_no_keepalive():
    m = machine()
    m.start()
    play(m, 0.0, timeout_s=0.0)
    assert m.deadline() == pytest.approx(5.0)
    short = machine()
    short.start()
    play(short, 0.0, timeout_s=1.0)  # any positive timeout, however short, gets keep-alives
    assert short.tick(0.5) == [KeepAlive()]


def test_an_ordinary_failure_keeps_the_transport_and_reports_the_delay_to_the_millisecond():
    m = machine(ConnectionPolicy(transport="udp"), draw=1 / 3)
    m.start()
    actions = m.failed(0.0, "closed by server")
    assert m.transport == "udp"
    assert events(actions)[1][1] == {"attempt": 1, "delay_s": 0.467, "transport": "udp"}  # 0.5 × (1 - 0.2/3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transport": "sctp"}, "transport must be 'tcp', 'udp' or 'auto', got 'sctp'"),
        ({"no_data_timeout_s": 0}, "timeouts and backoff times must be > 0"),
        ({"backoff_first_s": 0}, "timeouts and backoff times must be > 0"),
        ({"backoff_reset_s": 0}, "timeouts and backoff times must be > 0"),
        ({"backoff_first_s": 2.0, "backoff_cap_s": 1.0}, "backoff_cap_s must be >= backoff_first_s"),
        ({"jitter": 1.0}, r"jitter must be in \[0, 1\)"),
        ({"jitter": -0.1}, r"jitter must be in \[0, 1\)"),
    ],
)
def test_policy_rejects_invalid_values(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        ConnectionPolicy(**kwargs)


def test_policy_takes_its_boundary_values():
    policy = ConnectionPolicy(no_data_timeout_s=0.5, backoff_first_s=0.5, backoff_cap_s=0.5, backoff_reset_s=0.5, jitter=0.0)
    assert policy.backoff_s(3, 0.9) == 0.5


@given(
    st.lists(st.tuples(st.sampled_from(["tick", "packet", "fail", "fail461"]), st.floats(0.0, 3.0)), max_size=60),
    st.sampled_from([0.0, 6.0, 60.0]),
)
def test_random_inputs_keep_the_machine_consistent(steps, session_timeout_s):
    """Whatever happens, every failure yields disconnected+reconnecting, and the deadline is when the next tick acts."""
    m = machine(ConnectionPolicy(transport="udp", backoff_cap_s=4.0), draw=0.5)
    m.start()
    now = 0.0
    for kind, dt in steps:
        now += dt
        if kind == "tick":
            for action in m.tick(now):
                if isinstance(action, Connect):
                    assert m.state is State.CONNECTING
        elif kind == "packet":
            if m.state is State.CONNECTING:
                m.connected(now, session_timeout_s=session_timeout_s)
            m.packet(now)
        elif m.state in (State.CONNECTING, State.PLAYING):
            names = [e for e, _ in events(m.failed(now, "x", unsupported_transport=kind == "fail461"))]
            assert names == ["disconnected", "reconnecting"]
            assert m.deadline() - now <= 4.0
        assert_deadline_is_when_tick_acts(m)
        assert m.transport in ("udp", "tcp")


def assert_deadline_is_when_tick_acts(m: ConnectionMachine) -> None:
    """The shell sleeps until ``deadline()`` and then ticks: that tick must act, and none before it.

    A deadline too early makes the shell spin on ticks that do nothing; one too late misses a
    stall, a keep-alive or a retry. Checked on copies, so the run goes on undisturbed.
    """
    deadline, state = m.deadline(), m.state
    if deadline == math.inf:
        assert copy.deepcopy(m).tick(1e300) == [], f"{state}: no deadline, yet a tick acts"
        return
    assert math.isfinite(deadline)
    assert copy.deepcopy(m).tick(deadline) != [], f"{state}: the tick at the deadline {deadline} does nothing"
    before = copy.deepcopy(m)
    assert before.tick(math.nextafter(deadline, -math.inf)) == [] and before.state is state


def test_auto_starts_on_tcp_and_moves_to_udp_when_tcp_is_refused_for_good():
    m = machine(ConnectionPolicy(transport="auto", backoff_cap_s=4.0))
    assert m.start() == [Connect("tcp")]
    actions = m.failed(0.0, "UnsupportedTransportError: 461", unsupported_transport=True)
    assert events(actions)[1][1]["transport"] == "udp"
    assert m.tick(m.deadline()) == [Connect("udp")]
    play(m, 10.0)
    m.failed(30.0, "closed by server")  # an ordinary failure: the refusal is remembered
    assert m.tick(m.deadline()) == [Connect("udp")]


def test_auto_moves_to_tcp_when_udp_never_arrives_and_stays_when_both_are_refused():
    m = machine(ConnectionPolicy(transport="auto"))
    m.start()
    m.failed(0.0, "461", unsupported_transport=True)
    assert m.tick(m.deadline()) == [Connect("udp")]
    m.connected(10.0, session_timeout_s=60.0)
    actions = m.tick(15.0)
    assert actions[0] == Disconnect("no UDP packets in 5 s")
    assert events(actions)[1][1]["transport"] == "udp"  # TCP was refused too: keep trying, no flapping
