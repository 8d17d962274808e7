"""The `mediaplane` command: serve, migrate, token."""

from __future__ import annotations

import contextlib
import signal
from typing import Annotated

import typer
from rich.console import Console

from mediaplane.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Mediaplane media service.")
console = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (MEDIAPLANE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (MEDIAPLANE_PORT, default 3003).")] = None,
) -> None:
    """Migrate, then serve the API (embedded PostgreSQL when DATABASE_URL is unset)."""
    import uvicorn

    from mediaplane.app import create_app
    from mediaplane.logs import configure_logging
    from mediaplane.runtime import open_runtime

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    with open_runtime(settings) as runtime:
        application = create_app(settings, database=runtime.database, store=runtime.store)
        config = uvicorn.Config(
            application,
            host=host or settings.host,
            port=port or settings.port,
            proxy_headers=True,
            log_config=None,
            access_log=False,
        )
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; as an exception here it
        # unwinds `open_runtime`, so the embedded PostgreSQL is stopped, not left running.
        signal.signal(signal.SIGTERM, _raise_system_exit)
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run()


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision."""
    from mediaplane.runtime import open_runtime

    with open_runtime(Settings()):
        console.print("[green]database is at the newest revision[/green]")


@app.command()
def token(
    aud: Annotated[str, typer.Option(help="Audience: media or backoffice.")],
    role: Annotated[list[str], typer.Option(help="Role (repeat for several).")],
    sub: Annotated[str, typer.Option(help="Subject: the user id.")],
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a token signed with the dev key (only when no JWT key is configured)."""
    from mediaplane.auth import mint_dev_token

    settings = Settings()
    if not settings.uses_dev_jwt_key:
        console.print("[red]a JWT key is configured: tokens come from your identity provider[/red]")
        raise typer.Exit(2)
    typer.echo(mint_dev_token(settings, subject=sub, audience=aud, roles=role, ttl_seconds=ttl))


if __name__ == "__main__":
    app()
