#!/usr/bin/env python3
"""WebSocket-over-HTTP echo backend for the Pushpin baseline of scripts/bench.sh.

Pushpin holds the client's WebSocket and POSTs its events here
(Content-Type application/websocket-events); every TEXT or BINARY event is
answered with the same event, OPEN with OPEN, CLOSE with CLOSE.
Usage: ws_over_http_echo.py PORT (listens on 127.0.0.1).
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_events(body):
    events, i = [], 0
    while i < len(body):
        end = body.index(b"\r\n", i)
        head = body[i:end].decode()
        i = end + 2
        name, _, size = head.partition(" ")
        content = b""
        if size:
            n = int(size, 16)
            content = body[i:i + n]
            i += n + 2
        events.append((name, content))
    return events


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: zurl reuses its connections
    # Each response leaves in one write, with TCP_NODELAY: headers and body as
    # two small writes would meet Nagle + delayed ACK (~40 ms per message).
    disable_nagle_algorithm = True

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        out = bytearray()
        for name, content in parse_events(body):
            if name in ("OPEN", "CLOSE") and not content:
                out += name.encode() + b"\r\n"
            elif name in ("TEXT", "BINARY", "CLOSE"):
                out += b"%s %x\r\n%s\r\n" % (name.encode(), len(content), content)
        self.wfile.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: application/websocket-events\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(out), bytes(out)))

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # listen backlog (default 5) for churn bursts


Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
