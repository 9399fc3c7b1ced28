"""An HTTP proxy that breaks range requests on purpose: 503s, reset connections, stalls.

Public COG hosts drop a request now and then; glacierwatch relies on GDAL's retries
(catalog/gdal_env.py) to ride through. This proxy sits in front of nginx and, for a fraction
of the requests that carry a `Range` header, answers 503, resets the TCP connection (RST, which
curl reports as "Connection reset by peer"), or holds the request for `stall_s` before
forwarding it. Paths under `always_fail` get a fixed status on every request (a scene whose
COG is gone).

Deterministic from the seed: the n-th time a given (method, path, range) is asked for, the
draw is a hash of (seed, method, path, range, n), so a retry gets a fresh draw and a whole run
injects the same faults whatever order the threads ask in.

It runs as its own process (`python -m integration.fault_proxy`), like nginx: as a thread of
the test process it deadlocked (seen here) - a thread holding the GIL blocked inside GDAL on a
lock held by a thread that waited for the proxy's answer, which needed the GIL. The test side
drives it over HTTP: `PUT /_fault_proxy/plan`
(a FaultPlan as JSON) and `GET /_fault_proxy/stats`. One request per connection
(`Connection: close` both ways) keeps the relay trivial.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import struct
import sys
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

FAULT_KINDS = ("503", "reset", "stall")
CONTROL = "/_fault_proxy/"


@dataclass(frozen=True)
class FaultPlan:
    rate: float = 0.0  # fraction of range requests that get a fault
    seed: int = 0
    kinds: tuple[str, ...] = FAULT_KINDS  # drawn uniformly among these
    stall_s: float = 1.0  # GDAL_HTTP_TIMEOUT is not set (no timeout), so any stall ends in a response
    always_fail: dict[str, int] = field(default_factory=dict)  # path prefix -> HTTP status, every request

    def __post_init__(self):
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if set(self.kinds) - set(FAULT_KINDS) or not self.kinds:
            raise ValueError(f"fault kinds must be a non-empty subset of {FAULT_KINDS}, not {self.kinds}")
        if not 0 <= self.rate <= 1:
            raise ValueError(f"rate is a fraction in [0, 1], not {self.rate}")


def _draw(*parts) -> float:
    """Uniform in [0, 1), a pure function of `parts`."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class FaultInjector:
    """Which request gets which fault, and the count of what was done."""

    def __init__(self, plan: FaultPlan = FaultPlan()):
        self.configure(plan)

    def configure(self, plan: FaultPlan) -> None:
        """A new plan, counted afresh (attempt numbers restart too)."""
        self.plan = plan
        self.stats: Counter[str] = Counter()
        self._seen: Counter[tuple] = Counter()

    def decide(self, method: str, path: str, byte_range: str | None) -> str | int | None:
        """None (forward as is), "stall", "reset", "503", or a permanent status (int) for `always_fail` paths."""
        plan = self.plan
        self.stats["requests"] += 1
        for prefix, status in plan.always_fail.items():
            if path.startswith(prefix):
                self.stats[f"always_{status}"] += 1
                return int(status)
        if byte_range is None:
            return None
        self.stats["range_requests"] += 1
        key = (method, path, byte_range)
        self._seen[key] += 1
        attempt = self._seen[key]
        if plan.rate == 0 or _draw(plan.seed, *key, attempt) >= plan.rate:
            return None
        kind = plan.kinds[int(_draw(plan.seed, "kind", *key, attempt) * len(plan.kinds))]
        self.stats[kind] += 1
        return kind


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 503: "Service Unavailable"}


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes = b"") -> None:
    writer.write(
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\nConnection: close\r\n\r\n".encode() + body
    )
    await writer.drain()


class ProxyServer:
    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.injector = FaultInjector()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ", 2)
            headers = [tuple(line.split(":", 1)) for line in lines if ":" in line]
            if target.startswith(CONTROL):
                await self._control(method, target, headers, reader, writer)
                return
            byte_range = next((v.strip() for k, v in headers if k.strip().lower() == "range"), None)
            fault = self.injector.decide(method, target, byte_range)
            if fault == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
                writer.transport.abort()
                return
            if fault == "503" or isinstance(fault, int):
                await _respond(writer, 503 if fault == "503" else fault)
                return
            if fault == "stall":
                await asyncio.sleep(self.injector.plan.stall_s)
            await self._forward(method, target, headers, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _control(self, method, target, headers, reader, writer) -> None:
        name = target[len(CONTROL):]
        if name == "plan" and method == "PUT":
            length = int(next((v for k, v in headers if k.strip().lower() == "content-length"), "0"))
            self.injector.configure(FaultPlan(**json.loads(await reader.readexactly(length))))
            await _respond(writer, 200, json.dumps(asdict(self.injector.plan)).encode())
        elif name == "stats" and method == "GET":
            await _respond(writer, 200, json.dumps(dict(self.injector.stats)).encode())
        else:
            await _respond(writer, 404)

    async def _forward(self, method: str, target: str, headers: list, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        try:
            drop = ("connection", "keep-alive", "proxy-connection")
            kept = [f"{k}:{v}" for k, v in headers if k.strip().lower() not in drop]
            up_writer.write("\r\n".join([f"{method} {target} HTTP/1.1", *kept, "Connection: close", "", ""]).encode("latin-1"))
            await up_writer.drain()
            while chunk := await up_reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
        finally:
            up_writer.close()


async def serve(upstream: tuple[str, int], port: int) -> None:
    server = await asyncio.start_server(ProxyServer(upstream).handle, "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


# ---------------------------------------------------------------------------------------------
# the test side


class FaultProxy:
    """The proxy process in front of `upstream_port`: `start()`, `configure(plan)`, `stats()`, `stop()`."""

    def __init__(self, upstream_port: int, workdir: Path, reaper=None):
        from .stack import free_port

        self.upstream_port = upstream_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = Path(workdir)
        self.reaper = reaper
        self.service = None

    def start(self) -> FaultProxy:
        import os

        from .stack import _spawn, http_ok, wait_until

        self.workdir.mkdir(parents=True, exist_ok=True)
        tests_dir = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tests_dir), os.environ.get("PYTHONPATH")]))}
        args = [sys.executable, "-m", "integration.fault_proxy", "--upstream", f"127.0.0.1:{self.upstream_port}",
                "--port", str(self.port)]
        self.service = _spawn("fault proxy", args, self.workdir / "fault_proxy.log", env=env, reaper=self.reaper)
        wait_until(lambda: http_ok(f"{self.url}{CONTROL}stats"), self.service)
        return self

    def _call(self, method: str, name: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{CONTROL}{name}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def configure(self, plan: FaultPlan) -> None:
        """Inject faults as `plan` says from now on (counts restart)."""
        self._call("PUT", "plan", asdict(plan))

    def stats(self) -> Counter[str]:
        return Counter(self._call("GET", "stats"))

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="host:port of the server to proxy (nginx)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on, on 127.0.0.1")
    args = parser.parse_args(argv)
    host, port = args.upstream.rsplit(":", 1)
    asyncio.run(serve((host, int(port)), args.port))


if __name__ == "__main__":
    main()
