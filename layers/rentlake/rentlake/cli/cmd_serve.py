"""``rentlake serve``: the estimates API on 127.0.0.1, through the predict function's handler."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from rentlake.cli.cmd_estimate import Handler, predict_handler
from rentlake.cli.context import function_stdout
from rentlake.runtime.events import http_api_event, response_body, response_headers

MAX_READ_BYTES = 8 * 1024 * 1024  # beyond this the server refuses before reading (the API's limit is lower)


def register(sub: Any) -> None:
    """Add the ``serve`` command."""
    p = sub.add_parser(
        "serve",
        help="serve the estimates API and the tenant page locally (GET /, POST /estimates, GET /docs)",
        description="Serve the predict function on http://HOST:PORT: each HTTP request becomes an "
        "API Gateway "
        "HTTP API (v2) event for functions/predict/app.py's handler, and its response becomes the HTTP "
        "answer. Open / for the tenant page (estimate, interval, legal reference rent, market plot) and "
        "/docs for the interactive documentation. Stop with Ctrl-C.",
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.set_defaults(run=run)


class _Server(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: a burst of 20 clients would see dropped SYNs (1 s retries).
    request_queue_size = 128


def make_server(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """An HTTP server turning requests into HTTP API v2 events for ``handler``.

    Parameters
    ----------
    handler
        A Lambda handler for API Gateway HTTP API events.
    host, port
        Where to listen (port 0: any free port; read it from ``server.server_address``).

    Returns
    -------
    ThreadingHTTPServer
        The server, not yet serving (call ``serve_forever``).
    """

    handler_lock = threading.Lock()

    class Bridge(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "rentlake"
        # Headers and body go out in two writes: with Nagle on, a keep-alive client's delayed ACK holds
        # the body back ~40 ms.
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_READ_BYTES:
                self._send(
                    413,
                    [("Content-Type", "application/json")],
                    json.dumps(
                        {
                            "error": {
                                "code": "payload_too_large",
                                "message": "the body is too large",
                                "fields": [],
                            }
                        }
                    ).encode(),
                    close=True,
                )
                return
            body = self.rfile.read(length) if length else None
            url = urlsplit(self.path)
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]},{value}" if key in headers else value
            event = http_api_event(
                self.command,
                url.path or "/",
                body,
                headers=headers,
                query=url.query,
                source_ip=self.client_address[0],
            )
            # One request at a time through the handler, as in a Lambda environment: the Powertools
            # resolver keeps the current event on the app, so two threads inside it would mix requests.
            with handler_lock:
                resp = handler(event, None)
            self._send(int(resp.get("statusCode", 200)), response_headers(resp), response_body(resp))

        def _send(
            self, status: int, headers: list[tuple[str, str]], data: bytes, close: bool = False
        ) -> None:
            self.send_response(status)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
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

    server = _Server((host, port), Bridge)
    server.daemon_threads = True
    return server


def run(args: argparse.Namespace, ctx: Any) -> int:
    """Serve until interrupted."""
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
