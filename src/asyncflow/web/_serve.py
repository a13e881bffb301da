"""``asyncflow ui``: the status pages under uvicorn, on loopback unless told otherwise."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Final

import uvicorn

from .._log import log
from ..errors import ConfigError
from ..journal import describe
from ._app import create_app

__all__ = ["TOKEN_VARIABLE", "is_loopback", "serve"]

TOKEN_VARIABLE: Final = "ASYNCFLOW_UI_TOKEN"
"""The environment variable that may hold the token (instead of ``--token``)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): reachable from here only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def serve(journal: Path | str, *, host: str, port: int, token: str | None) -> None:
    """Serve the pages of ``journal`` (a file, or a PostgreSQL URL) until interrupted.

    Raises:
        ConfigError: a host other than loopback without a token, or the
            address cannot be listened on.
    """
    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--host {host} is reachable from other machines: pass --token TOKEN "
            f"(or set {TOKEN_VARIABLE}), which every request must then carry"
        )
    app = create_app(journal=journal, token=token)
    # The socket is bound here, before uvicorn starts, so the address (with the
    # port the system chose for --port 0) can be told before serving begins;
    # connections wait in the backlog meanwhile.
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", server_header=False, access_log=False
    )
    log.info(
        "ui.serving",
        url=f"http://{shown}:{bound}/",
        journal=describe(journal),
        token=token is not None,
    )
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
