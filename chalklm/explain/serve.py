"""Running the explain server: a socket on 127.0.0.1 (a free port unless asked), uvicorn.

uvicorn stops cleanly on Ctrl-C and on SIGTERM (it finishes the requests under way and
closes the socket). The socket is bound here, before the address is printed, so the
address printed is the one that answers, and a port already taken is one clear line.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
import time
import webbrowser

from chalklm.errors import ConfigError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); "
                          "pick another --port, or leave it out for a free one") from None
    sock.listen(128)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(app, host: str = "127.0.0.1", port: int = 0, open_browser: bool = False) -> None:
    """Serve `app` until Ctrl-C or SIGTERM; print the address first."""
    import uvicorn

    if host not in LOCAL_HOSTS:
        print(f"chalklm: warning: listening on {host}: anyone who can reach this machine "
              "can use the page and its API (there is no login)", file=sys.stderr)
    sock = bind(host, port)
    url = address(sock)
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    # uvicorn finishes the requests under way, then passes the signal on; here Ctrl-C and
    # SIGTERM are the ordinary way to stop (from the moment the address is printed), so
    # both end in "stopped" and exit status 0.
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        print(f"chalklm explain: open {url} (Ctrl-C stops)", flush=True)
        if open_browser:
            threading.Timer(0.5, webbrowser.open, args=(url,)).start()
        uvicorn.Server(config).run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    print("chalklm explain: stopped", flush=True)


class _Stopped(Exception):
    """SIGTERM arrived (after uvicorn shut down in good order)."""


def _stopped(signum, frame):
    raise _Stopped


@contextlib.contextmanager
def running_server(explainer, wait_s: float = 60.0):
    """http://127.0.0.1:PORT/ of an explain server for `explainer` (None: the leaf/flower
    network alone), served from a thread of this process until the block ends (for the
    page's tests, docs/screenshots.py and benchmarks/explain.py)."""
    import uvicorn

    from chalklm.explain.app import make_app

    sock = bind("127.0.0.1", 0)
    app = make_app(explainer, local_only=True)  # as `chalklm explain` serves it
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + wait_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the explain server did not start")
        time.sleep(0.02)
    try:
        yield address(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
