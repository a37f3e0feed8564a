"""A local HTTP server on 127.0.0.1 for download tests (this machine has no network, which is the point): serves
files from a dict of URL path → bytes, answers `Range: bytes=N-` with 206 and Content-Range, logs every request,
and can drop a connection after a number of bytes (an interrupted download) or pace its writes (so that concurrent
fetchers overlap; nothing asserts on time).
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["Served"]

_RANGE = re.compile(r"bytes=(\d+)-$")


class Served:
    """with Served({"/models/x.pth": data}) as server: server.url + "/models/x.pth"; server.requests lists
    (path, Range header or None) per request. drop_after[path] = n: the next answer for path sends n bytes of its
    body, then closes the connection (once). pace_s: a pause after every 64 KiB written."""

    def __init__(self, files: dict[str, bytes], pace_s: float = 0.0, port: int = 0):
        self.files = dict(files)
        self.pace_s = pace_s
        self.drop_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        served = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                header = self.headers.get("Range")
                with served._lock:
                    served.requests.append((self.path, header))
                    drop = served.drop_after.pop(self.path, None)
                data = served.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                match = _RANGE.match(header or "")
                if match and int(match.group(1)) >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if match:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                limit = len(body) if drop is None else min(drop, len(body))
                for offset in range(0, limit, 1 << 16):
                    self.wfile.write(body[offset:min(offset + (1 << 16), limit)])
                    if served.pace_s:
                        time.sleep(served.pace_s)
                if drop is not None:
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Served:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)
