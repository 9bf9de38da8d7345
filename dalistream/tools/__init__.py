"""Tooling beside the service: accuracy evaluation, calibration capture, the demo and its local RTSP server, model provisioning."""
