"""What can stop a process before it serves, said in one plain line each.

A newcomer's first mistakes are a wrong environment variable, a database that does not answer
and a second `serve` on a port already taken. Each becomes a `StartupError` carrying lines meant
for a person (the variable's name as they typed it, what is accepted, where), which the CLI
prints and exits 2 on; the traceback is only shown with LOG_LEVEL=debug.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from mediaplane.settings import Settings

# What a value of each pydantic error type should look like, in the words of a shell user.
ACCEPTED_BY_ERROR_TYPE = {
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "bool_parsing": "true or false (also 1/0, yes/no, on/off)",
    "missing": "a value",
}

# Never echo these back: they are secrets, or URLs that may carry a password.
SECRET_MARKERS = ("secret", "key", "password", "token")


class StartupError(Exception):
    """A problem the user can fix by changing their setup; `lines` say what and how."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def env_name(field_or_alias: str) -> str:
    """The environment variable a user sets for a settings field (`port` → `MEDIAPLANE_PORT`)."""
    field = Settings.model_fields.get(field_or_alias)
    if field is None:
        return field_or_alias.upper()
    choices = getattr(field.validation_alias, "choices", None)
    return str(choices[0]).upper() if choices else field_or_alias.upper()


def shown_value(variable: str, value: Any) -> str:
    """`='value'` for the message, or nothing when the value may be a secret."""
    if not isinstance(value, str | int | float | bool):
        return ""
    if any(marker in variable.lower() for marker in SECRET_MARKERS):
        return ""
    if variable == "DATABASE_URL" and isinstance(value, str):
        try:
            value = make_url(value).render_as_string(hide_password=True)
        except Exception:  # not even a URL: still a secret to some
            return ""
    return f"={str(value)!r}"


def settings_problems(error: ValidationError) -> list[str]:
    """One line per invalid setting, naming the environment variable and what it accepts."""
    lines = []
    for problem in error.errors(include_url=False):
        location = problem.get("loc") or ()
        kind = problem.get("type", "")
        if kind == "value_error":
            accepted = str(problem.get("ctx", {}).get("error", problem.get("msg", "")))
        elif kind in ACCEPTED_BY_ERROR_TYPE:
            accepted = f"expected {ACCEPTED_BY_ERROR_TYPE[kind]}"
        else:
            message = str(problem.get("msg", ""))
            accepted = message.replace("Input should be", "expected", 1)
        if not location:  # a rule across several settings names them itself
            lines.append(f"invalid settings: {accepted}")
            continue
        variable = env_name(str(location[0]))
        value = shown_value(variable, problem.get("input"))
        lines.append(f"invalid setting {variable}{value}: {accepted}")
    return lines


def load_settings() -> Settings:
    """The settings of this process, or a `StartupError` listing every wrong variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise StartupError(
            *settings_problems(exc), "every setting is described in docs/configuration.md"
        ) from exc


def claim_port(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port now, before anything slow starts, so a second instance
    learns at once that the port is taken (and no other can take it while this one starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn does: a restart may rebind while old connections sit in TIME_WAIT. Only
    # listening makes the port exclusive (two bound, non-listening sockets may share it).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        where = f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"another instance is already serving on {where}",
                "stop it, or serve on another port (--port or MEDIAPLANE_PORT)",
            ) from exc
        raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def check_database(url: str) -> None:
    """Connect once: an unreachable DATABASE_URL is one line naming the server, not a
    SQLAlchemy traceback (and never the password)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from mediaplane.db.engine import libpq_url

    conninfo = libpq_url(url)
    try:
        psycopg.connect(conninfo, connect_timeout=10).close()
    except psycopg.OperationalError as exc:
        params = conninfo_to_dict(conninfo)
        host = params.get("host") or "localhost"
        where = f"{host}:{params.get('port') or 5432}"
        if str(host).startswith("/"):
            where = f"the socket in {host}"
        first = (str(exc).strip().splitlines() or ["no answer"])[0]
        # libpq: 'connection failed: connection to server at "h", port 1 failed: REASON'
        reason = first.rsplit("failed: ", 1)[-1].strip() or first
        raise StartupError(
            f"cannot connect to PostgreSQL at {where} (DATABASE_URL): {reason}",
            "is the server running and reachable, and are the user, password and database right?",
        ) from exc
