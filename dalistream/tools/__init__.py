"""Tooling beside the service: accuracy evaluation, calibration capture, the demo and its local RTSP server, the sample clip, model provisioning."""
