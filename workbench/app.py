"""The therapist app: ``workbench serve`` starts a local web page that runs the whole workflow by clicking.

Pages (a sidebar on the left): **Speakers** (list, create with a de-identified
code and a consent record, open), **Record** (prompt by prompt with the
browser's microphone, or uploads), **Personalize** (train with live progress and
curves, Stop), **Results** (ASR word error rate before/after with its interval,
per-recording alignments, "try a phrase", report downloads), **Live captions** (the speaker talks, the
personal model captions; say it back in a clear voice, correct a line) and **Speakers map**.
The pages call the same core functions as the notebooks and the CLI
(:mod:`workbench.app_pages` holds them).

Safe by default:

- it listens on 127.0.0.1 only (this computer);
- ``password`` turns on a login page (Panel's basic auth); after 5 wrong passwords an
  address must wait (30 s, doubling, at most 15 minutes); listening on another
  address (``--address 0.0.0.0``) is refused without one;
- Panel's ``/components/...`` route needs the login too, and never imports a module named
  in a URL (:mod:`workbench.app_pages.access`);
- no request leaves the computer: Panel and Bokeh's files are served by the app
  itself, the recorder's code is inlined, the login page is the app's own;
- everything is written inside the data folder, and every speaker id or file
  from a request is checked against it; uploaded file names are never used as paths;
- each browser session has its own state; training runs in a background thread,
  one run per speaker at a time.

Start it from Python (e.g. with a different base model)::

    from workbench.app import serve
    serve("~/workbench-data", port=5006)            # http://127.0.0.1:5006/

The microphone works on ``http://127.0.0.1`` / ``localhost`` or over ``https://``;
elsewhere browsers block it and the upload buttons remain.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from workbench.defaults import RUN_DEFAULTS
from workbench.errors import ServerError

__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_PORT",
    "MIN_PASSWORD_LENGTH",
    "add_serve_arguments",
    "check_address",
    "create_app",
    "read_password",
    "serve",
    "serve_cli",
]

DEFAULT_PORT = 5006
DEFAULT_DATA_DIR = "workbench-data"  # relative to the folder the app is started in
MIN_PASSWORD_LENGTH = 8
PASSWORD_ENV = "WORKBENCH_PASSWORD"
# Bytes per websocket message from a page. A longer one closes the connection (the page looks alive but is
# dead), so uploads travel in pieces far below it (app_pages/upload_input.py) and takes in 1 s chunks.
_MAX_MESSAGE = 16 * 1024 * 1024
# A session whose page is gone (tab closed, or a plain GET that never opened the websocket) is
# destroyed this long after its last connection ended, and its state freed (WorkbenchApp.close).
_SESSION_LIFETIME_MS = 15_000  # Bokeh's default: a slow page still has time to connect
_SESSION_CHECK_MS = 3_000  # how often the server looks (Bokeh's default, 17 s, keeps dead sessions longer)


def _is_loopback(address: str) -> bool:
    if address in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_address(address: str, password: str | None) -> None:
    """Refuse to listen beyond this computer without a password.

    Raises:
        ServerError: ``address`` is not a loopback address (127.0.0.1, ::1, localhost) and
            there is no password, or the password is too short.
    """
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise ServerError(f"The password is too short ({len(password)} characters); use at least "
                         f"{MIN_PASSWORD_LENGTH}.")
    if not _is_loopback(str(address)) and not password:
        raise ServerError(
            f"Refusing to listen on {address}: other computers could open the app and the recordings without a "
            "password. Set one with --password-file FILE (a file holding the password) or the environment "
            f"variable {PASSWORD_ENV}, or leave out --address to use the app on this computer only (127.0.0.1).")


def read_password(password_file: str | os.PathLike | None = None,
                  env: Mapping[str, str] | None = None) -> str | None:
    """The app password: the first line of ``password_file``, else ``$WORKBENCH_PASSWORD``, else None.

    A file keeps the password out of the shell history and the process list.
    """
    if password_file:
        path = Path(password_file).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ServerError(f"Cannot read the password file {path} ({err}). Check the path.") from None
        lines = text.splitlines()
        password = lines[0].strip() if lines else ""
        if not password:
            raise ServerError(f"The password file {path} is empty: put the password on its first line.")
        return password
    value = (os.environ if env is None else env).get(PASSWORD_ENV, "")
    return value or None


def create_app(data_dir: str | os.PathLike, *, models: Mapping[str, str] | None = None,
               backend_factory: Callable[[str], Any] | None = None,
               train_config: Callable[[float], Any] | None = None,
               decoder: str = RUN_DEFAULTS.decoder) -> Callable[[], Any]:
    """The per-session app factory that :func:`serve` hands to Panel.

    Args:
        data_dir: folder of speaker folders (created if needed).
        models: base models offered on the Personalize page, label -> name for
            ``backend_factory`` (default: the built-in model).
        backend_factory: ``fn(name) -> backend`` (default :func:`workbench.models.load_base_model`).
            Tests pass a small random model here.
        train_config: ``fn(minutes) -> TrainConfig`` (default: the core defaults with that time ceiling).
        decoder: ``"lexicon"`` (default, as the CLI) or ``"greedy"``.

    Returns:
        a function building one session's page (a Panel template).
    """
    from workbench.app_pages.common import AppContext

    kwargs: dict[str, Any] = {"data_dir": Path(data_dir).expanduser(), "decoder": decoder}
    if models:
        kwargs["models"] = dict(models)
    if backend_factory is not None:
        kwargs["backend_factory"] = backend_factory
    if train_config is not None:
        kwargs["train_config"] = train_config
    kwargs["data_dir"].mkdir(parents=True, exist_ok=True)
    ctx = AppContext(**kwargs)

    def session() -> Any:
        import panel as pn

        from workbench.app_pages.shell import WorkbenchApp

        app = WorkbenchApp(ctx)
        app.open_from_url()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda _session: app.close())
        return app.template()

    session.context = ctx  # type: ignore[attr-defined]
    return session


_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Speech Workbench: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f1f3f5;margin:0;color:#212529}
form{max-width:360px;margin:12vh auto;background:#fff;padding:28px 32px;border-radius:10px;
box-shadow:0 2px 12px rgba(0,0,0,.08)} h1{font-size:1.4em;margin:0 0 .2em} p{color:#495057}
label{display:block;margin:14px 0 4px;font-weight:500} input{width:100%;box-sizing:border-box;padding:9px;
font-size:1em;border:1px solid #adb5bd;border-radius:6px} button{margin-top:18px;width:100%;padding:10px;
font-size:1.05em;border:0;border-radius:6px;background:#2a6f97;color:#fff;cursor:pointer}
.error{color:#b00020;font-weight:500}
</style></head><body>
<form action=".{{ login_endpoint }}" method="post">
<h1>Speech Workbench</h1><p>Type the password you were given to open the app.</p>
{% if errormessage %}<p class="error" role="alert">{{ errormessage|e }}</p>{% endif %}
<input type="hidden" name="username" value="workbench">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<button type="submit">Sign in</button>
</form></body></html>
"""

_LOGOUT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Speech Workbench: signed out</title>
<style>body{font-family:system-ui,sans-serif;background:#f1f3f5;margin:0}
div{max-width:360px;margin:12vh auto;background:#fff;padding:28px 32px;border-radius:10px}</style></head>
<body><div><h1>Signed out</h1><p><a href=".{{ LOGIN_ENDPOINT }}">Sign in again</a></p></div></body></html>
"""


def _auth_templates() -> dict[str, str]:
    """Login/logout pages with no external links (Panel's own load a logo and icon from a CDN)."""
    folder = Path(tempfile.mkdtemp(prefix="workbench-auth-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "login.html").write_text(_LOGIN_PAGE, encoding="utf-8")
    (folder / "logout.html").write_text(_LOGOUT_PAGE, encoding="utf-8")
    return {"login_template": str(folder / "login.html"), "logout_template": str(folder / "logout.html")}


def _origins(address: str, port: int) -> list[str]:
    """Hosts whose pages may open the app's websocket: this computer's names and addresses."""
    hosts = {"localhost", "127.0.0.1"}  # Bokeh's allow-list takes no IPv6 literals
    if not _is_loopback(address):
        if address not in ("0.0.0.0", "::", "") and ":" not in address:
            hosts.add(address)
        name = socket.gethostname()
        hosts |= {name, socket.getfqdn()}
        try:
            hosts |= set(socket.gethostbyname_ex(name)[2])
        except OSError:
            pass
    return sorted(f"{h}:{port}" for h in hosts if h and ":" not in h)


def serve(data_dir: str | os.PathLike | None = None, *, address: str = "127.0.0.1", port: int = DEFAULT_PORT,
          password: str | None = None, show: bool = True, models: Mapping[str, str] | None = None,
          backend_factory: Callable[[str], Any] | None = None, train_config: Callable[[float], Any] | None = None,
          decoder: str = RUN_DEFAULTS.decoder, allow_origins: list[str] | None = None, threaded: bool = False,
          verbose: bool = True) -> Any:
    """Start the app (blocks until Ctrl+C unless ``threaded``).

    Args:
        data_dir: folder of speaker folders (default ``./workbench-data``, created if needed).
        address: where to listen; default 127.0.0.1 (this computer only). Any other address
            needs ``password``.
        port: TCP port (default 5006).
        password: turn on the login page (at least 8 characters).
        show: open the page in the default browser.
        models, backend_factory, train_config, decoder: see :func:`create_app`.
        allow_origins: ``host:port`` values allowed to open the websocket (default: this
            computer's names and addresses).
        threaded: run the server in a background thread and return it (``server.stop()`` ends it).

    Raises:
        ServerError: unsafe address without a password, or a password that is too short.
    """
    check_address(address, password)
    import panel as pn

    data = Path(data_dir if data_dir is not None else DEFAULT_DATA_DIR).expanduser().resolve()
    app = create_app(data, models=models, backend_factory=backend_factory, train_config=train_config,
                     decoder=decoder)
    kwargs: dict[str, Any] = {
        "port": int(port), "address": address, "show": show, "title": "Speech Workbench",
        "websocket_origin": allow_origins or _origins(address, int(port)),
        "websocket_max_message_size": _MAX_MESSAGE, "threaded": threaded,
        "unused_session_lifetime_milliseconds": _SESSION_LIFETIME_MS,
        "check_unused_sessions_milliseconds": _SESSION_CHECK_MS,
    }
    from workbench.app_pages.access import auth_provider, component_route

    kwargs["extra_patterns"] = [component_route()]  # in place of Panel's: login required, no import by URL
    if password:
        import secrets

        templates = _auth_templates()
        kwargs.update(auth_provider=auth_provider(password, login_template=templates["login_template"],
                                                  logout_template=templates["logout_template"]),
                      cookie_secret=secrets.token_urlsafe(32))
    if verbose:
        host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
        print(f"Speech Workbench: open http://{host}:{port}/ in a browser"
              f"{' (password required)' if password else ''}.\nData folder: {data}\nPress Ctrl+C to stop.",
              flush=True)
    return pn.serve({"/": app}, **kwargs)


def add_serve_arguments(parser: Any) -> Any:
    """Add the ``workbench serve`` options to an argparse (sub)parser; returns it."""
    parser.add_argument("--data", default=None,
                        help=f"folder of speaker folders (default: ./{DEFAULT_DATA_DIR}, created if needed)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="where to listen (default 127.0.0.1: this computer only); 0.0.0.0 needs a password")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--password-file", default=None,
                        help=f"file whose first line is the password (or set ${PASSWORD_ENV}); turns on a login page")
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    return parser


def serve_cli(args: Any) -> int:
    """``workbench serve``: the argparse namespace of :func:`add_serve_arguments` -> :func:`serve`."""
    password = read_password(getattr(args, "password_file", None))
    serve(getattr(args, "data", None), address=getattr(args, "address", "127.0.0.1"),
          port=getattr(args, "port", DEFAULT_PORT), password=password, show=not getattr(args, "no_browser", False))
    return 0
