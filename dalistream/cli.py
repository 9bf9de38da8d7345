"""Command line: ``python -m dalistream --config site.toml`` and the ``demo``/``bench``/``check`` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import sys
from pathlib import Path

import structlog

from dalistream import config as config_module
from dalistream import logs

log = structlog.get_logger("dalistream")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(json=args.log_json, level=args.log_level)
    try:
        match args.command:
            case "demo" | "bench":
                return _local(args)
            case "check":
                return _check(args)
            case _:
                if args.config is None:
                    _parser().error("--config is required (or use a subcommand: demo, bench, check)")
                return _serve(args)
    except config_module.ConfigError as exc:
        log.error("invalid configuration", error=str(exc))
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dalistream", description="Multi-camera RTSP face detection to JSON lines.")
    parser.add_argument("--config", type=Path, help="site.toml to run")
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: run until SIGINT/SIGTERM)")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines instead of console text")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", metavar="{demo,bench,check}")
    demo = commands.add_parser("demo", help="local RTSP server + bundled clip → JSON lines")
    bench = commands.add_parser("bench", help="like demo, and report throughput, per-stage cost and latency")
    for sub, duration in ((demo, 25.0), (bench, 30.0)):
        sub.add_argument("--cameras", type=int, default=4, help="number of simulated cameras (default 4)")
        sub.add_argument("--duration", type=float, default=duration, metavar="S", help=f"seconds to run (default {duration:g})")
        sub.add_argument("--out", type=Path, default=Path("out") / sub.prog.split()[-1], help="output directory")
        sub.add_argument("--transport", choices=["tcp", "udp"], default="tcp")
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
    check = commands.add_parser("check", help="validate a config file and print it resolved")
    check.add_argument("config", type=Path)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from dalistream.runtime import Runtime

    config = config_module.load(args.config)
    logs.configure(json=args.log_json or config.logging.json, level=config.logging.level)
    runtime = Runtime(config)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        log.info("running", cameras=len(config.camera), output=str(config.output.dir))
        await runtime.run(stop)

    asyncio.run(serve())
    log.info("stopped", analysed=runtime.analysed(), files=[str(p) for p in runtime.output_paths])
    return 0


def _local(args: argparse.Namespace) -> int:
    from dalistream.demo import run_local

    if args.cameras < 1:
        log.error("--cameras must be at least 1")
        return 2
    report = run_local(args.cameras, args.duration, args.out, args.transport)
    if args.command == "demo" and not args.json:
        report = {key: report[key] for key in ("cameras", "recall", "run") if key in report}
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _check(args: argparse.Namespace) -> int:
    config = config_module.load(args.config)
    plain = dataclasses.asdict(config)
    for camera in plain["camera"]:
        camera["url"] = config_module.redact_url(camera["url"])
    print(json.dumps(plain, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
