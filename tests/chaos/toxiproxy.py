"""Shopify's Toxiproxy for the chaos suite: its server as a process and a small client of its
HTTP API (https://github.com/Shopify/toxiproxy#http-api), both on 127.0.0.1.

A proxy listens on a port of its own and relays to a destination's real port; the mover is
configured with the proxy's port, so every byte between a mover and that destination passes
through it. A fault is a "toxic" on the proxy (``latency``, ``bandwidth``, ``timeout``,
``limit_data``, ``reset_peer`` ...) or the proxy disabled (every connection cut, new ones
refused). ``clear`` puts a proxy back to a clean relay.

The server is built by ``infra/install.sh`` into ``var/cache/bin``; without it the network
faults skip, saying how to build it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bus.settings import ROOT

SERVER = ROOT / "var" / "cache" / "bin" / "toxiproxy-server"


@dataclass(frozen=True)
class Toxiproxy:
    """A client of one running toxiproxy-server's API."""

    api: str  # http://127.0.0.1:<port>

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.api}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json() if response.content else None

    def create(self, name: str, listen_port: int, upstream_port: int) -> None:
        """A proxy ``name`` from 127.0.0.1:``listen_port`` to 127.0.0.1:``upstream_port``."""
        self._call(
            "POST",
            "/proxies",
            {
                "name": name,
                "listen": f"127.0.0.1:{listen_port}",
                "upstream": f"127.0.0.1:{upstream_port}",
                "enabled": True,
            },
        )

    def enable(self, name: str, enabled: bool) -> None:
        """Disabling a proxy closes every connection through it and refuses new ones."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def add_toxic(
        self,
        proxy: str,
        kind: str,
        attributes: dict[str, int],
        *,
        stream: str = "downstream",
        toxicity: float = 1.0,
    ) -> None:
        """A toxic of ``kind`` on one direction of ``proxy`` (``toxicity``: the share of
        connections it applies to)."""
        self._call(
            "POST",
            f"/proxies/{proxy}/toxics",
            {
                "name": f"{kind}_{stream}",
                "type": kind,
                "stream": stream,
                "toxicity": toxicity,
                "attributes": attributes,
            },
        )

    def clear(self, proxy: str) -> None:
        """Every toxic of ``proxy`` removed and the proxy enabled: a clean relay again."""
        for toxic in self._call("GET", f"/proxies/{proxy}/toxics"):
            self._call("DELETE", f"/proxies/{proxy}/toxics/{toxic['name']}")
        self.enable(proxy, True)


@contextmanager
def toxiproxy_server(port: int, log: Path) -> Iterator[Toxiproxy]:
    """A toxiproxy-server on 127.0.0.1:``port`` for the ``with`` block; stopped after it."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(SERVER), "-host", "127.0.0.1", "-port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    client = Toxiproxy(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{client.api}/version", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"toxiproxy-server did not start; see {log}") from None
                time.sleep(0.1)
        yield client
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
