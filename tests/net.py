"""Small network helpers the integration tests share: a free port, a JSON GET."""

from __future__ import annotations

import json
import socket
import urllib.request
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(base: str, path: str) -> Any:
    """``GET base + path``, its JSON body."""
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.loads(response.read())
