"""HTTP servers no one here wrote, for tests/test_servers.py: each keeps every event it is
sent (one line per request in the file BACKFILL_TEST_STORE names) and answers 202.

The ASGI app runs under uvicorn (h11 and httptools) and hypercorn, the WSGI app under
waitress, gunicorn and cheroot; tornado and Python's http.server (HTTP/1.0) are started by
`python tests/real_servers.py NAME PORT KEEP_ALIVE`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

STORE_ENV = "BACKFILL_TEST_STORE"
ACCEPTED = b'{"status":"SUCCESS"}'


def keep(body: bytes) -> None:
    """One line per request, written whole in one append (workers may share the file)."""
    line = body.replace(b"\n", b" ") + b"\n"
    fd = os.open(os.environ[STORE_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


async def asgi_app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    keep(body)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"20")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": ACCEPTED})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    keep(environ["wsgi.input"].read(length))
    start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", "20")])
    return [ACCEPTED]


def serve_tornado(port: int, keep_alive: float) -> None:
    import asyncio

    import tornado.httpserver
    import tornado.web

    class Events(tornado.web.RequestHandler):
        def post(self) -> None:
            keep(self.request.body)
            self.set_status(202)
            self.write(ACCEPTED)

    async def main() -> None:
        app = tornado.web.Application([(r"/events", Events)])
        server = tornado.httpserver.HTTPServer(app, idle_connection_timeout=keep_alive)
        server.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


def serve_cheroot(port: int, keep_alive: float) -> None:
    from cheroot import wsgi

    wsgi.Server(("127.0.0.1", port), wsgi_app, timeout=int(keep_alive)).safe_start()


def serve_http_server(port: int, keep_alive: float) -> None:
    """Python's own server, HTTP/1.0: a connection per request, the answer ends with it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Events(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_POST(self) -> None:  # http.server's name for it
            keep(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.end_headers()  # no length: the body ends with the connection
            self.wfile.write(ACCEPTED)

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Events).serve_forever()


if __name__ == "__main__":
    name, port_text, keep_alive_text = sys.argv[1:4]
    serve = {"tornado": serve_tornado, "cheroot": serve_cheroot, "http.server": serve_http_server}
    serve[name](int(port_text), float(keep_alive_text))
