"""``bench --sweep``: the local RTSP server (or file sources) with N cameras of the sample clip,
for each N in turn, one row per count measured over a window after a warm-up, and the largest
count held.

A count is held when every camera analysed its ``detect_fps`` (≥ 99 % of it, counted by frame
arrival over the window), nothing was dropped or lost, and the p99 latency stayed within
:data:`HELD_P99_MS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dalistream.progress import Progress
from dalistream.tools.demo import run_local

HELD_FPS_SHARE = 0.99  # of detect_fps, per camera
HELD_P99_MS = 300.0

COLUMNS = (
    ("cameras", "cameras", "{}"),
    ("analysed_fps_min", "fps min", "{:.2f}"),
    ("analysed_fps_mean", "fps mean", "{:.2f}"),
    ("dropped", "dropped", "{}"),
    ("frames_lost", "lost", "{}"),
    ("latency_p50_ms", "p50 ms", "{:.0f}"),
    ("latency_p99_ms", "p99 ms", "{:.0f}"),
    ("cpu_percent", "CPU %", "{:.0f}"),
    ("rtsp_server_cpu_percent", "server CPU %", "{:.1f}"),
    ("held", "held", "{}"),
)


def held(window: Mapping[str, Any]) -> bool:
    return (
        window["analysed_fps_min"] >= HELD_FPS_SHARE * window["detect_fps"]
        and window["dropped"] == 0
        and window["frames_lost"] == 0
        and window["latency_p99_ms"] <= HELD_P99_MS
    )


def sweep(
    counts: Sequence[int],
    duration_s: float,
    warmup_s: float,
    out: Path,
    *,
    source: str = "rtsp",
    transport: str = "tcp",
    pace: str = "realtime",
    model: Mapping[str, Any] | None = None,
    pipeline: Mapping[str, Any] | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Run each camera count in turn (a fresh server and runtime each time); the rows and the
    largest count held (0 when none was). ``mqtt``: the ``[mqtt]`` table, records published too."""
    rows = []
    run_s = warmup_s + duration_s
    with Progress("bench --sweep", "s") as progress:
        for done, cameras in enumerate(counts):
            report = run_local(cameras, duration_s, out / f"{cameras}", transport, source=source, pace=pace,
                               warmup_s=warmup_s, model=model, pipeline=pipeline, tables=tables,
                               progress=_Leg(progress, done * run_s, len(counts) * run_s, f"{cameras} cameras"))
            row = report["window"]
            rows.append({**row, "held": held(row)})
    return {
        "source": source,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "model": dict(model or {}),
        "pipeline": dict(pipeline or {}),
        **{name: dict(table) for name, table in (tables or {}).items()},
        "rows": rows,
        "held": max((row["cameras"] for row in rows if row["held"]), default=0),
    }


class _Leg:
    """One run's progress as a stretch of the sweep's line."""

    def __init__(self, progress: Progress, offset: float, total: float, label: str) -> None:
        self._progress, self._offset, self._total, self._label = progress, offset, total, label

    def update(self, done: float, total: float, note: str = "") -> None:
        self._progress.update(self._offset + done, self._total, f"{self._label}, {note}" if note else self._label)


def table(report: Mapping[str, Any]) -> str:
    """The sweep as a Markdown table, then the largest count held."""
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in report["rows"]:
        lines.append("| " + " | ".join(form.format(row[key]) for key, _, form in COLUMNS) + " |")
    lines.append(f"held: {report['held']} cameras")
    return "\n".join(lines)
