"""``rentlake serve``: the estimates API on 127.0.0.1, through the predict function's handler.

Each HTTP request becomes an API Gateway HTTP API (v2) event for ``functions/predict/app.py``'s handler,
and its response the HTTP answer. The server is meant for one machine, but it answers whatever reaches
its port, so it keeps its own limits (each refusal has the API's JSON error shape):

* a body is announced by one non-negative ``Content-Length`` (anything else: 400) of at most
  :data:`MAX_READ_BYTES` (413, before a byte is read), or sent ``chunked`` and read up to the same cap;
  another transfer coding is refused (501), and so is a request announcing both (400);
* a connection that sends nothing for :data:`SOCKET_TIMEOUT_S` seconds is closed;
* at most :data:`MAX_CONNECTIONS` connections at once: the next one is answered 503 with
  ``Retry-After: 1`` and closed at once (it does not wait for a slot);
* every response carries :data:`rentlake.runtime.page.SECURITY_HEADERS` (the API sets them; the server
  adds them to its own refusals).

``kill -USR1 <pid>`` prints the stack of every thread of the server to stderr: a server that stops
answering can say where it is.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import re
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import urlsplit

from rentlake.cli.cmd_estimate import Handler, predict_handler
from rentlake.cli.context import LambdaContext, function_stdout
from rentlake.runtime.errors import JSON, ApiError
from rentlake.runtime.events import http_api_event, response_body, response_headers
from rentlake.runtime.page import SECURITY_HEADERS

MAX_READ_BYTES = 8 * 1024 * 1024  # beyond this the server refuses before reading (the API's limit is lower)
MAX_CONNECTIONS = 64
SOCKET_TIMEOUT_S = 30.0
_DIGITS = re.compile(r"[0-9]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


def register(sub: Any) -> None:
    """Add the ``serve`` command."""
    p = sub.add_parser(
        "serve",
        help="serve the estimates API and the tenant page locally (GET /, POST /estimates, GET /docs)",
        description="Serve the predict function on http://HOST:PORT: each HTTP request becomes an "
        "API Gateway HTTP API (v2) event for functions/predict/app.py's handler, and its response becomes "
        "the HTTP answer. Open / for the tenant page (estimate, interval, legal reference rent, market "
        f"plot) and /docs for the interactive documentation. At most {MAX_CONNECTIONS} connections at once "
        f"(the next get a 503), idle ones closed after {SOCKET_TIMEOUT_S:g} s. Stop with Ctrl-C.",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.set_defaults(run=run)


class Refusal(Exception):
    """A request the server answers itself, without the handler (then closes the connection)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.error = ApiError(status, code, message)


def content_length(values: list[str]) -> int | None:
    """The body size of ``Content-Length`` header values (None: no header).

    Raises
    ------
    Refusal
        400 unless the values name one non-negative integer; 413 beyond :data:`MAX_READ_BYTES`.
    """
    if not values:
        return None
    sizes = {v.strip() for value in values for v in value.split(",")}
    if len(sizes) != 1 or not _DIGITS.fullmatch(text := sizes.pop()):
        raise Refusal(400, "bad_content_length", "Content-Length must be one non-negative integer")
    if len(text.lstrip("0")) > 15 or int(text) > MAX_READ_BYTES:
        raise Refusal(413, "payload_too_large", "the body is too large")
    return int(text)


def read_chunked(rfile: IO[bytes], limit: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body, refused as soon as it grows beyond ``limit`` bytes.

    Raises
    ------
    Refusal
        400 for a malformed or truncated chunk, 413 beyond ``limit``.
    """
    body = bytearray()
    while True:
        line = rfile.readline(1024)
        size_text = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
        if not line.endswith(b"\n") or not _HEX.fullmatch(size_text):
            raise Refusal(400, "bad_chunk", "malformed chunked body (chunk size line)")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(body) + size > limit:
            raise Refusal(413, "payload_too_large", "the body is too large")
        chunk = rfile.read(size)
        if len(chunk) < size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise Refusal(400, "bad_chunk", "malformed chunked body (truncated chunk)")
        body += chunk
    for _ in range(64):  # trailer fields, up to the empty line
        if rfile.readline(8192) in (b"\r\n", b"\n", b""):
            return bytes(body)
    raise Refusal(400, "bad_chunk", "malformed chunked body (too many trailer lines)")


class Bridge(BaseHTTPRequestHandler):
    """One connection: HTTP requests in, the handler's answers out."""

    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "rentlake"
    # Headers and body go out in two writes: with Nagle on, a keep-alive client's delayed ACK holds the
    # body back ~40 ms.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        self.timeout = self.server.socket_timeout_s  # StreamRequestHandler sets it on the socket
        super().setup()

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except Refusal as refusal:
            self._send(refusal.error.status, [("Content-Type", JSON)], _error_json(refusal.error), close=True)
            return
        url = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            if key != "transfer-encoding":  # the handler gets the whole body, as from API Gateway
                headers[key] = f"{headers[key]},{value}" if key in headers else value
        event = http_api_event(
            self.command,
            url.path or "/",
            body,
            headers=headers,
            query=url.query,
            source_ip=self.client_address[0],
        )
        resp = self.server.answer(event)
        self._send(int(resp.get("statusCode", 200)), response_headers(resp), response_body(resp))

    def _read_body(self) -> bytes | None:
        codings = self.headers.get_all("Transfer-Encoding") or []
        length = content_length(self.headers.get_all("Content-Length") or [])
        if not codings:
            return self.rfile.read(length) if length else None
        if length is not None:  # a request smuggling vector: two ways to read one body
            raise Refusal(400, "bad_request", "Content-Length and Transfer-Encoding must not both be sent")
        if [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
            raise Refusal(501, "not_implemented", "only the chunked transfer coding is supported")
        return read_chunked(self.rfile, MAX_READ_BYTES) or None

    def _send(self, status: int, headers: list[tuple[str, str]], data: bytes, close: bool = False) -> None:
        self.send_response(status)
        sent = set()
        for name, value in headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
                sent.add(name.lower())
        for name, value in SECURITY_HEADERS.items():
            if name.lower() not in sent:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _handle  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        print(f"{self.address_string()} {format % args}", file=sys.stderr)


def _error_json(err: ApiError) -> bytes:
    return json.dumps(err.body()).encode("utf-8")


class ApiServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them; one request at a time through the
    handler, as in a Lambda environment (the Powertools resolver keeps the current event on the app, so
    two threads inside it would mix requests)."""

    # socketserver's listen backlog is 5: a burst of 20 clients would see dropped SYNs (1 s retries).
    request_queue_size = 128
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: Handler, *, max_connections: int, socket_timeout_s: float
    ) -> None:
        self.handler = handler
        self.socket_timeout_s = socket_timeout_s
        self._handler_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, Bridge)

    def answer(self, event: dict[str, Any]) -> dict[str, Any]:
        """The handler's response to one event, called with a Lambda-like context."""
        with self._handler_lock:
            return self.handler(event, LambdaContext("predict"))

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _refuse_busy(sock: socket.socket) -> None:
    """Answer 503 on a connection over the limit, from the accepting thread (a few hundred bytes: the
    kernel's buffer takes them at once; the timeout guards the accept loop anyway)."""
    err = ApiError(503, "server_busy", f"more than {MAX_CONNECTIONS} connections at once; retry")
    body = _error_json(err)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**SECURITY_HEADERS, "Content-Type": JSON}.items())
    data = (
        f"HTTP/1.1 503 Service Unavailable\r\n{head}Retry-After: 1\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii") + body
    try:
        sock.settimeout(1.0)
        sock.sendall(data)
    except OSError:
        pass  # the client is gone: nothing to tell it


def make_server(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    max_connections: int = MAX_CONNECTIONS,
    socket_timeout_s: float = SOCKET_TIMEOUT_S,
) -> ApiServer:
    """An HTTP server turning requests into HTTP API v2 events for ``handler``.

    Parameters
    ----------
    handler
        A Lambda handler for API Gateway HTTP API events (called with a Lambda-like context).
    host, port
        Where to listen (port 0: any free port; read it from ``server.server_address``).
    max_connections
        Connections served at once; the next ones are answered 503 and closed.
    socket_timeout_s
        Seconds a connection may stay silent (idle keep-alive, or a request sent too slowly).

    Returns
    -------
    ApiServer
        The server, not yet serving (call ``serve_forever``).
    """
    return ApiServer(
        (host, port), handler, max_connections=max_connections, socket_timeout_s=socket_timeout_s
    )


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Serve until interrupted."""
    if hasattr(signal, "SIGUSR1"):  # not on Windows
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    server = make_server(predict_handler(ctx), args.host, args.port)
    host, port = server.server_address[:2]
    print(
        f"serving the estimates API on http://{host}:{port} (page: http://{host}:{port}/, "
        f"docs: http://{host}:{port}/docs); Ctrl-C stops",
        file=ctx.out,
        flush=True,
    )
    try:
        # One redirect for the whole server (redirect_stdout is process-wide, not per thread): the
        # handler's EMF lines go to the lake's logs/predict.log (stderr for a real bucket); ctx.out
        # keeps the command's own lines.
        with function_stdout(ctx, "predict"):
            server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=ctx.out)
    finally:
        server.server_close()
    return 0
