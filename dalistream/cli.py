"""Command line: ``python -m dalistream --config site.toml`` and the ``demo``/``bench``/``check`` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path

import structlog

from dalistream import config as config_module
from dalistream import logs
from dalistream.progress import Progress

log = structlog.get_logger("dalistream")

EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h): a bug of ours, not the configuration or the cameras


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure(json=args.log_json, level=args.log_level)
    try:
        match args.command:
            case "demo" | "bench":
                return _local(args)
            case "check":
                return _check(args)
            case "eval":
                return _eval(args)
            case "calibrate":
                return _calibrate(args)
            case "build":
                return _build(args)
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
    parser.add_argument("--persist-cameras", action="store_true",
                        help="keep cameras added/removed at run time in SITE.cameras.json beside the config, and start from it")
    commands = parser.add_subparsers(dest="command", metavar="{demo,bench,check,eval,calibrate,build}")
    demo = commands.add_parser("demo", help="local RTSP server + bundled clip → JSON lines")
    bench = commands.add_parser("bench", help="like demo, and report throughput, per-stage cost and latency")
    for sub, duration in ((demo, 25.0), (bench, 30.0)):
        sub.add_argument("--cameras", type=int, default=4, help="number of simulated cameras (default 4)")
        sub.add_argument("--duration", type=float, default=duration, metavar="S", help=f"seconds to run (default {duration:g})")
        sub.add_argument("--out", type=Path, default=Path("out") / sub.prog.split()[-1], help="output directory")
        sub.add_argument("--source", choices=["rtsp", "file"], default="rtsp",
                         help="rtsp: the local RTSP server serves the clip (default); file: cameras read the clip file")
        sub.add_argument("--transport", choices=["tcp", "udp"], default="tcp", help="RTP transport of --source rtsp")
        sub.add_argument("--pace", choices=["realtime", "fast"], default="realtime", help="pace of --source file")
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.add_argument("--sweep", type=_counts, metavar="N,N,...",
                       help="run each camera count in turn (e.g. 4,6,8,10,12): one row per count and the largest held")
    bench.add_argument("--warmup", type=float, metavar="S", help="seconds run before the measured window (default: 5 with --sweep, else 0)")
    bench.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="model.precision (int8 needs frames in --calib-dir; fp16 the GPU)")
    bench.add_argument("--device", choices=["auto", "cpu", "gpu"], help="pipeline.device (default cpu)")
    bench.add_argument("--engine", choices=["auto", "onnxruntime", "tensorrt", "torch"], help="model.engine (default auto)")
    bench.add_argument("--gpu-decode", choices=["nvdec", "dali-gop"], help="pipeline.gpu_decode (default nvdec)")
    bench.add_argument("--calib-dir", type=Path, help="model.calib_dir for --precision int8 (default: calib_data)")
    bench.add_argument("--input", type=_size, metavar="WxH", help="model.input (default 960x544)")
    bench.add_argument("--mqtt", metavar="URL", help="also publish every record, detections included, to this broker (mqtt://host:port)")
    bench.add_argument("--tracks", choices=["on", "off"], help="tracks.enabled: face tracks, their events and crops (default on)")
    bench.add_argument("--crops", choices=["on", "off"], help="faces.crops: the best picture of each face as a JPEG (default on)")
    check = commands.add_parser("check", help="validate a config file, resolve the device plan, print both")
    check.add_argument("config", type=Path)
    evaluate = commands.add_parser("eval", help="WIDER FACE AP of the detection path on an annotated image folder")
    evaluate.add_argument("--images", type=Path, required=True, help="image folder (names as in the ground truth)")
    evaluate.add_argument("--gt", type=Path, required=True, help="ground truth: name w h / count / x y w h easy medium hard")
    evaluate.add_argument("--config", dest="eval_config", type=Path, help="site.toml whose [model] to evaluate")
    evaluate.add_argument("--input", type=_size, metavar="WxH", help="letterbox input (default: the config's)")
    evaluate.add_argument("--precision", choices=["fp32", "fp16", "int8"],
                          help="engine precision (default: the config's); fp16 on the CPU runs the FP16 file through ONNX Runtime")
    evaluate.add_argument("--json", action="store_true", help="print the report as one JSON object")
    calibrate = commands.add_parser("calibrate", help="capture INT8 calibration frames from the configured cameras")
    calibrate.add_argument("--config", dest="target_config", type=Path, required=True, help="site.toml with the cameras")
    calibrate.add_argument("--frames", type=int, default=200, help="frames to capture, spread across cameras (default 200)")
    calibrate.add_argument("--out", type=Path, help="output folder (default: the config's model.calib_dir)")
    calibrate.add_argument("--interval", type=float, default=2.0, metavar="S", help="least stream time between two frames of one camera")
    calibrate.add_argument("--timeout", type=float, default=600.0, metavar="S", help="give up after S seconds with what was captured")
    build = commands.add_parser("build", help="make the precision's ONNX file (INT8, FP16) and, on the GPU, its TensorRT engine")
    build.add_argument("--config", dest="target_config", type=Path, required=True, help="site.toml whose [model] to build")
    return parser


def _serve(args: argparse.Namespace) -> int:
    from dalistream.pipeline.preflight import preflight
    from dalistream.pipeline.runtime import Runtime
    from dalistream.service.control import CameraControl, capacity_admission, state_file, with_persisted_cameras
    from dalistream.service.health import publish_stats
    from dalistream.service.http import HttpService
    from dalistream.service.metrics import metrics_registry

    config = config_module.load(args.config)
    if args.persist_cameras:
        config = with_persisted_cameras(config, state_file(args.config))
    logs.configure(json=args.log_json or config.logging.json, level=config.logging.level)
    if config.cluster is None:
        runtime = Runtime(config)
        registry, admission, workers = metrics_registry(runtime), capacity_admission(runtime), None
    else:
        from dalistream.cluster.coordinator import Coordinator
        from dalistream.cluster.ray_cluster import JoinError

        runtime = Coordinator(config, preflight(config))
        try:
            runtime.connect()
        except JoinError as exc:
            log.error("cannot start the cluster", reason=str(exc))
            return 2
        registry, admission, workers = runtime.registry, runtime.admission, runtime.workers
    control = CameraControl(runtime, args.config, admission=admission,
                            refuse=config.pipeline.admission == "refuse", persist=args.persist_cameras)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task[None]] = set()

        def reload() -> None:
            task = asyncio.create_task(control.reload(), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, reload)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        http = HttpService(runtime, control, config.http, registry, workers) if config.http.listen else None
        if http is not None:
            await http.start()
        stats = None if config.mqtt is None else asyncio.create_task(publish_stats(runtime, config.mqtt.stats_interval_s, workers))
        log.info("running", cameras=len(config.camera), output=str(config.output.dir))
        try:
            await runtime.run(stop)
        finally:
            if stats is not None:
                stats.cancel()
            if http is not None:
                await http.stop()

    try:
        asyncio.run(serve())
    except config_module.ConfigError:
        raise  # e.g. an INT8 model that cannot be made: the configuration's fault (exit 2)
    except Exception:
        # A shared stage (batcher, detector, writer) failed: a bug. Stop at once, loudly.
        log.exception("internal error: a stage shared by all cameras failed; stopping", files=[str(p) for p in runtime.output_paths])
        return EXIT_INTERNAL_ERROR
    internal = {camera: count for camera, count in runtime.internal_errors().items() if count}
    log.info("stopped", analysed=runtime.analysed(), files=[str(p) for p in runtime.output_paths],
             records_written=runtime.records_written, records_lost=runtime.records_lost,
             **({"internal_errors": internal} if internal else {}))
    if runtime.records_lost and not runtime.output_recovered:
        log.error("records were lost and the output never recovered", records_lost=runtime.records_lost)
        return 1
    return 0


def _local(args: argparse.Namespace) -> int:
    from dalistream.tools.demo import run_local

    if args.cameras < 1:
        log.error("--cameras must be at least 1")
        return 2
    bench = args.command == "bench"
    model, pipeline, tables = {}, {}, {}
    if bench:
        model = {key: value for key, value in (("precision", args.precision), ("calib_dir", args.calib_dir and str(args.calib_dir)),
                                                ("input", args.input and list(args.input)), ("engine", args.engine)) if value is not None}
        pipeline = {key: value for key, value in (("device", args.device), ("gpu_decode", args.gpu_decode)) if value is not None}
        tables = {table: {key: value == "on"} for table, key, value in (("tracks", "enabled", args.tracks), ("faces", "crops", args.crops))
                  if value is not None}
        if args.mqtt is not None:
            tables["mqtt"] = {"url": args.mqtt, "publish_detections": True}
        if args.sweep:
            from dalistream.tools.bench import sweep, table

            report = sweep(args.sweep, args.duration, 5.0 if args.warmup is None else args.warmup, args.out,
                           source=args.source, transport=args.transport, pace=args.pace, model=model, pipeline=pipeline,
                           tables=tables)
            print(json.dumps(report) if args.json else table(report))
            return 0
    with Progress("bench", "s") if bench else contextlib.nullcontext() as progress:
        report = run_local(args.cameras, args.duration, args.out, args.transport, source=args.source, pace=args.pace,
                           warmup_s=(args.warmup or 0.0) if bench else 0.0, model=model, pipeline=pipeline, tables=tables,
                           progress=progress, store_costs=bench)
    if args.command == "demo" and not args.json:
        report = {key: report[key] for key in ("cameras", "recall", "run") if key in report}
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def _check(args: argparse.Namespace) -> int:
    from dalistream.device import GPU
    from dalistream.engine import model_files
    from dalistream.pipeline.capacity import available_cores, gpu_demand, plan_for, probe_gpu_resources
    from dalistream.pipeline.preflight import preflight
    from dalistream.engine.shape import inference_shape

    config = config_module.load(args.config)
    plan = preflight(config)
    plain = dataclasses.asdict(config)
    for camera in plain["camera"]:
        camera["url"] = config_module.redact_url(camera["url"])
    plain["device_plan"] = {"device": plan.device, "reason": plan.reason}
    plain["model_files"] = model_files(config.model)  # the ONNX file each precision runs, on either device
    plain["inference_shape"] = inference_shape(config.pipeline, config.model, plan.device, available_cores()).as_dict()
    capacity = plan_for(config, plan)
    plain["capacity"] = capacity.as_dict()
    if plan.device == GPU:
        plain["gpu"] = gpu_demand(probe_gpu_resources(plan.gpu or ""), capacity.cameras)
    if config.cluster is not None:
        from dalistream.cluster.check import cluster_plan, offered_nodes, summary
        from dalistream.cluster.ray_cluster import JoinError

        try:
            nodes = offered_nodes(config.cluster.address)
        except JoinError as exc:
            log.error("cannot check the cluster", reason=str(exc))
            return 2
        plain["cluster_plan"] = cluster_plan(config, plan, nodes)
    print(json.dumps(plain, indent=2, default=str))
    log.info("device plan", device=plan.device, reason=plan.reason)
    (log.info if capacity.verdict == "fits" else log.warning)("capacity plan", verdict=capacity.verdict, summary=capacity.summary())
    if "cluster_plan" in plain:
        (log.info if plain["cluster_plan"]["verdict"] == "fits" else log.warning)(
            "cluster plan", verdict=plain["cluster_plan"]["verdict"], summary=summary(plain["cluster_plan"]))
    return 0


def _counts(text: str) -> list[int]:
    counts = [part.strip() for part in text.split(",")]
    if not all(part.isdigit() and int(part) > 0 for part in counts):
        raise argparse.ArgumentTypeError(f"expected camera counts like 4,6,8; got {text!r}")
    return [int(part) for part in counts]


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x640; got {text!r}")
    return int(width), int(height)


def _eval(args: argparse.Namespace) -> int:
    from dalistream.pipeline.preflight import device_plan
    from dalistream.tools import accuracy

    path = args.eval_config or args.config
    config = config_module.load(path) if path is not None else None
    model = accuracy.with_overrides(config.model if config else config_module.ModelConfig(), args.input, args.precision)
    plan = device_plan(config.pipeline.device if config else config_module.PipelineConfig().device)
    try:
        # ONNX Runtime's quantizer prints progress while an INT8 model is first made: keep
        # stdout for the report alone.
        with contextlib.redirect_stdout(sys.stderr), Progress("eval", "images") as progress:
            report = accuracy.run(model, args.images, args.gt, plan=plan, progress=progress)
    except accuracy.EvaluationError as exc:
        log.error("evaluation failed", error=str(exc))
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        width, height = report["input"]
        print(f"{report['kind']} {width}x{height} {report['precision']}: {report['images']} images, {report['faces']} faces")
        print("  ".join(f"{setting} {report[setting]:.2f}" for setting in ("easy", "medium", "hard", "all")))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from dalistream.tools.calibrate import capture

    config = config_module.load(args.target_config)
    if args.frames < 1:
        log.error("--frames must be at least 1")
        return 2
    out = args.out or config.model.calib_dir
    with Progress("calibrate", "frames") as progress:
        report = asyncio.run(capture(config, args.frames, out, interval_s=args.interval, timeout_s=args.timeout, progress=progress))
    print(json.dumps({"out": str(out), "frames": len(report.files), "per_camera": report.per_camera,
                      "duplicates_skipped": report.duplicates, "complete": report.complete}))
    return 0 if report.files else 1


def _build(args: argparse.Namespace) -> int:
    from dalistream.engine import build
    from dalistream.engine.tensorrt import EngineBuildError

    config = config_module.load(args.target_config)
    try:
        built = build(config)
    except EngineBuildError as exc:
        log.error("engine build failed", error=str(exc))
        return 1
    print(json.dumps(built))
    return 0


if __name__ == "__main__":
    sys.exit(main())
