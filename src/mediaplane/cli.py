"""The `mediaplane` command: serve, worker, migrate, token, jobs, reprocess, projects,
consents."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import time
import traceback
import uuid
from datetime import UTC
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from mediaplane.startup import StartupError, claim_port, load_settings

if TYPE_CHECKING:
    from rich.table import Table

    from mediaplane.db import Database
    from mediaplane.jobs.models import StepName
    from mediaplane.jobs.operations import Failure, Summary

app = typer.Typer(no_args_is_help=True, help="Mediaplane media service.")
console = Console(stderr=True)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (MEDIAPLANE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (MEDIAPLANE_PORT, default 3003).")] = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Also run a job worker in-process.")
    ] = True,
) -> None:
    """Migrate, then serve the API (embedded PostgreSQL when DATABASE_URL is unset)."""
    import structlog
    import uvicorn

    from mediaplane.app import create_app
    from mediaplane.http import HttpLimits
    from mediaplane.http.server import server_config
    from mediaplane.jobs.tasks import PERIODIC_TASKS
    from mediaplane.logs import configure_logging
    from mediaplane.runtime import open_runtime

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json, routine_tasks=PERIODIC_TASKS)
    host, port = host or settings.host, port or settings.port
    settings = settings.serving_on(host, port)
    # Before the embedded PostgreSQL starts: a second `serve` says so at once, plainly.
    listener = claim_port(host, port)
    with open_runtime(settings) as runtime:
        application = create_app(
            settings, database=runtime.database, store=runtime.store, run_worker=worker
        )
        config = server_config(
            application,
            HttpLimits.from_settings(settings),
            host=host,
            port=port,
            proxy_headers=True,
            log_config=None,
            access_log=False,
        )
        # uvicorn announces its address only when it binds the port itself. The one URL to
        # open is PUBLIC_URL: the bind's own address unless set (behind a proxy).
        where = settings.public_url
        bound = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        structlog.get_logger("mediaplane.cli").info(
            f"serving on {where}: console at /, OpenAPI at /docs", url=where, bind=bound
        )
        # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; as an exception here it
        # unwinds `open_runtime`, so the embedded PostgreSQL is stopped, not left running.
        signal.signal(signal.SIGTERM, _raise_system_exit)
        # What startup built (modules, the app, ORM mappers: ~200,000 objects) lives as long as
        # the process: out of the collector's sight, a full collection under load takes 4 ms
        # instead of 170 (docs/decisions.md, "Performance, round 2").
        gc.collect()
        gc.freeze()
        with contextlib.suppress(KeyboardInterrupt):
            uvicorn.Server(config).run(sockets=[listener])


def _raise_system_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


@app.command("worker")
def worker_command(
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs at once (WORKER_CONCURRENCY, default 2).")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics of this worker on this port.")
    ] = None,
) -> None:
    """Run a job worker alone: many may run, on many machines, sharing the queue.

    Supervised: when the database goes away the worker is restarted with backoff until it is
    back; the process itself exits only when stopped (SIGTERM/SIGINT).
    """
    from mediaplane.jobs.supervisor import WorkerCollector
    from mediaplane.jobs.tasks import PERIODIC_TASKS
    from mediaplane.jobs.worker import job_env, run_worker, supervised_worker
    from mediaplane.logs import configure_logging
    from mediaplane.runtime import open_runtime

    settings = load_settings()
    configure_logging(settings.log_level, json=settings.log_json, routine_tasks=PERIODIC_TASKS)
    with open_runtime(settings) as runtime:
        env = job_env(settings, database=runtime.database, store=runtime.store)
        supervisor = supervised_worker(env, concurrency=concurrency)
        if metrics_port is not None:
            from prometheus_client import REGISTRY, start_http_server

            # Job counters and durations, and this worker's liveness, live in this process:
            # expose them here.
            REGISTRY.register(WorkerCollector(supervisor.liveness))
            start_http_server(metrics_port, addr=settings.host)
        with contextlib.suppress(KeyboardInterrupt):
            run_worker(env, supervisor=supervisor)


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision."""
    from mediaplane.runtime import open_runtime

    with open_runtime(load_settings()):
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

    settings = load_settings()
    if not settings.uses_dev_jwt_key:
        console.print("[red]a JWT key is configured: tokens come from your identity provider[/red]")
        raise typer.Exit(2)
    typer.echo(mint_dev_token(settings, subject=sub, audience=aud, roles=role, ttl_seconds=ttl))


class PhotoStep(StrEnum):
    """Steps `reprocess --step` may name; faces only once photos go through it."""

    THUMBNAIL = "thumbnail"
    WATERMARK = "watermark"
    FACES = "faces"


# How often `reprocess --wait` reads the steps table: cheap (one indexed count), and quick
# enough that the bar moves with the work.
POLL_SECONDS = 0.5


storage_app = typer.Typer(no_args_is_help=True, help="Object storage set-up (S3 mode).")
app.add_typer(storage_app, name="storage")


@storage_app.command("cors")
def storage_cors(
    apply: Annotated[
        bool,
        typer.Option("--apply", help="Replace the bucket's CORS rules with the ones needed."),
    ] = False,
) -> None:
    """Show the bucket's CORS rules and the ones CORS_ALLOWED_ORIGINS needs; --apply sets them.

    Browser uploads in S3 mode PUT to the bucket itself: it must answer their preflights.
    """
    import json

    from mediaplane.storage import S3ObjectStore, build_store
    from mediaplane.storage.cors import browser_upload_rules

    settings = load_settings()
    if settings.storage_backend != "s3":
        console.print(
            "local disk: this service answers the browser itself (CORS_ALLOWED_ORIGINS); "
            "bucket CORS is for STORAGE_URL=s3://..."
        )
        raise typer.Exit(2)
    store = build_store(settings)
    assert isinstance(store, S3ObjectStore)
    wanted = browser_upload_rules(settings.cors_allowed_origins)
    if apply:
        store.put_cors_rules(wanted)
    current = store.cors_rules()
    typer.echo(json.dumps({"bucket": store.bucket, "rules": current, "needed": wanted}, indent=2))
    if not apply and _without_ids(current) != _without_ids(wanted):
        console.print("the bucket's rules differ from what is needed: run with --apply")
        raise typer.Exit(1)


def _without_ids(rules: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in rule.items() if k != "ID"} for rule in rules]


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(help="Failures to list, newest first.")] = 20,
) -> None:
    """Show steps by status, queue depth, uploads by status and the latest failures."""
    from mediaplane.jobs import operations
    from mediaplane.runtime import open_runtime

    with open_runtime(load_settings()) as runtime, runtime.database.transaction() as session:
        state = operations.summary(session)
        failed = operations.failures(session, limit=limit)
    _render_summary(Console(), state, failed)


@app.command()
def reprocess(
    project: Annotated[
        uuid.UUID | None, typer.Option(help="Every uploaded photo of this project.")
    ] = None,
    photo: Annotated[uuid.UUID | None, typer.Option(help="This one photo.")] = None,
    step: Annotated[
        list[PhotoStep] | None,
        typer.Option(help="Step to run again (repeat for several; default: every photo step)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the work until every step settles.")
    ] = True,
) -> None:
    """Queue photo steps again (one transaction), then follow them until they settle.

    Exits 1 when a step failed, so scripts can tell. Stopping the wait (Ctrl-C) leaves the
    steps queued: workers carry on.
    """
    from mediaplane.jobs import operations
    from mediaplane.jobs.models import StepName
    from mediaplane.runtime import open_runtime

    if (project is None) == (photo is None):
        console.print("[red]give exactly one of --project or --photo[/red]")
        raise typer.Exit(2)
    settings = load_settings()
    try:
        chosen = operations.photo_steps(
            [StepName(s) for s in step] if step else None,
            faces_enabled=settings.face_engine != "off",
        )
    except operations.StepNotEnabled as exc:
        console.print(f"[red]{exc.message}[/red]")
        raise typer.Exit(2) from exc

    with open_runtime(settings) as runtime:
        db = runtime.database
        with db.transaction() as session:
            uploads = operations.select_for_reprocess(session, project_id=project, photo_id=photo)
            queued = operations.reprocess(session, uploads=uploads, steps=chosen)
            upload_ids = [u.id for u in uploads]
        if not upload_ids:
            console.print("[yellow]no uploaded photo matches: nothing to reprocess[/yellow]")
            raise typer.Exit(1)
        names = ", ".join(chosen)
        console.print(
            f"queued {plural(queued, 'step')} ({names}) of {plural(len(upload_ids), 'photo')}"
        )
        if not wait:
            return
        _follow(db, upload_ids=upload_ids, steps=chosen)
        with db.transaction() as session:
            done, failed, total = operations.progress(session, upload_ids=upload_ids, steps=chosen)
            failures = operations.failures(
                session, limit=total, upload_ids=upload_ids, steps=chosen
            )
    _render_outcome(done=done, failed=failed, total=total, failures=failures)
    if failed:
        raise typer.Exit(1)


def _follow(db: Database, *, upload_ids: list[uuid.UUID], steps: list[StepName]) -> None:
    """A progress bar (settled/total, ETA) until every step is done or failed."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from mediaplane.jobs import operations

    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("processing", total=None)
        while True:
            with db.transaction() as session:
                done, failed, total = operations.progress(
                    session, upload_ids=upload_ids, steps=steps
                )
            label = f"processing ({failed} failed)" if failed else "processing"
            bar.update(task, completed=done + failed, total=total, description=label)
            if done + failed >= total:
                return
            time.sleep(POLL_SECONDS)


projects_app = typer.Typer(no_args_is_help=True, help="Projects.")
app.add_typer(projects_app, name="projects")


@projects_app.command("delete")
def delete_project(
    project_id: Annotated[uuid.UUID, typer.Argument(help="The project to erase.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a project and everything of it (photos, derivatives, faces, matches) with a
    progress bar. The same work as DELETE /v1/projects/{id}; resumes an interrupted one."""
    from datetime import datetime

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from mediaplane.errors import NotFound
    from mediaplane.faces.index import build_index
    from mediaplane.projects import service as projects
    from mediaplane.projects.erasure import ProjectEraser
    from mediaplane.runtime import open_runtime

    settings = load_settings()
    with open_runtime(settings) as runtime:
        db = runtime.database
        with db.transaction() as session:
            deletion = projects.deletion_of(session, project_id=project_id)
            if deletion is None:
                try:
                    project = projects.get(session, project_id=project_id, lock=True)
                except NotFound as exc:
                    console.print(f"[red]{exc.message}[/red]")
                    raise typer.Exit(1) from exc
                count = projects.photo_count(session, project_id=project_id)
                if not yes and not typer.confirm(
                    f"Erase project {project.name!r} and its {plural(count, 'photo')}?"
                ):
                    raise typer.Exit(1)
                deletion = projects.request_deletion(
                    session, project=project, requested_by="cli", now=datetime.now(UTC)
                )
            total = deletion.photos_total
        eraser = ProjectEraser(db=db, store=runtime.store, index=build_index(settings))
        columns = (TextColumn("erasing"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("erasing", total=total)
            done = eraser.run(
                project_id,
                now=lambda: datetime.now(UTC),
                on_progress=lambda d: bar.update(
                    task, completed=d.photos_erased, total=d.photos_total
                ),
            )
    console.print(f"project {project_id} erased: {plural(done.photos_erased, 'photo')}")


consents_app = typer.Typer(no_args_is_help=True, help="Consent records.")
app.add_typer(consents_app, name="consents")


@consents_app.command("export")
def export_consents(
    since: Annotated[str, typer.Option("--from", help="Start, included (ISO 8601, UTC).")],
    until: Annotated[str, typer.Option("--to", help="End, excluded (ISO 8601, UTC).")],
) -> None:
    """Every consent grant and revocation of a period as CSV on stdout, for an audit."""
    import csv
    import sys
    from datetime import datetime

    from mediaplane.consent import service as consents
    from mediaplane.runtime import open_runtime

    try:
        start, end = (datetime.fromisoformat(v) for v in (since, until))
    except ValueError as exc:
        console.print(f"[red]not an ISO 8601 time: {exc}[/red]")
        raise typer.Exit(2) from exc
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    if end <= start:
        console.print("[red]--to must be after --from[/red]")
        raise typer.Exit(2)
    with open_runtime(load_settings()) as runtime, runtime.database.transaction() as session:
        found = consents.events(session, since=start, until=end)
    out = csv.writer(sys.stdout)
    out.writerow(["at", "user_id", "purpose", "event", "source"])
    for e in found:
        out.writerow([e.at.astimezone(UTC).isoformat(), e.user_id, e.purpose, e.event, e.source])


def plural(count: int, noun: str) -> str:
    """`1 step`, `2 steps`, `0 photos`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _render_summary(out: Console, state: Summary, failed: list[Failure]) -> None:
    from rich.table import Table

    from mediaplane.jobs.models import StepStatus
    from mediaplane.uploads import UploadStatus

    step_statuses = [str(s) for s in StepStatus]
    steps = Table(title="Steps by status")
    steps.add_column("step")
    for status in step_statuses:
        steps.add_column(status, justify="right")
    for name in sorted({step for step, _ in state.steps}):
        steps.add_row(name, *(str(state.steps.get((name, s), 0)) for s in step_statuses))
    out.print(steps)

    queue = Table(title="Queue depth")
    for column in ("task", "todo", "doing"):
        queue.add_column(column, justify="left" if column == "task" else "right")
    for task in sorted({task for task, _ in state.queue}):
        queue.add_row(task, *(str(state.queue.get((task, s), 0)) for s in ("todo", "doing")))
    if not state.queue:
        queue.add_row("(empty)", "0", "0")
    out.print(queue)

    # Every status present is a column, known or not: no upload vanishes from the table.
    # `deleted` rows are tombstones of erased photos (docs/media-api.md, "Deletion"): not uploads.
    upload_statuses = [str(s) for s in UploadStatus if s != UploadStatus.DELETED]
    upload_statuses += sorted({s for _, s in state.uploads} - set(upload_statuses))
    uploads = Table(title="Uploads by status")
    uploads.add_column("kind")
    for status in upload_statuses:
        uploads.add_column(status, justify="right")
    for kind in sorted({kind for kind, _ in state.uploads}):
        uploads.add_row(kind, *(str(state.uploads.get((kind, s), 0)) for s in upload_statuses))
    out.print(uploads)

    if failed:
        out.print(_failures_table("Latest failures", failed, with_project=True))
    else:
        out.print("[green]no failed steps[/green]")


def _render_outcome(*, done: int, failed: int, total: int, failures: list[Failure]) -> None:
    from rich.table import Table

    out = Console()
    outcome = Table(title="Reprocess")
    outcome.add_column("outcome")
    outcome.add_column("steps", justify="right")
    outcome.add_row("done", str(done))
    outcome.add_row("failed", str(failed))
    outcome.add_row("total", str(total))
    out.print(outcome)
    if failures:
        out.print(_failures_table("Failed steps", failures, with_project=False))


def _failures_table(title: str, failed: list[Failure], *, with_project: bool) -> Table:
    from rich.table import Table

    table = Table(title=title)
    # Ids are never cut: operators paste them into `reprocess --photo`.
    table.add_column("photo", no_wrap=True)
    if with_project:
        table.add_column("project", no_wrap=True)
    table.add_column("step")
    table.add_column("reason", overflow="fold")
    table.add_column("attempts", justify="right")
    table.add_column("finished")
    for failure in failed:
        finished = (
            failure.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if failure.finished_at
            else ""
        )
        project = [str(failure.project_id or "")] if with_project else []
        table.add_row(
            str(failure.photo_id),
            *project,
            failure.step,
            failure.reason or "",
            str(failure.attempts),
            finished,
        )
    return table


def main() -> None:
    """The `mediaplane` command: a setup problem is a plain message and exit code 2."""
    try:
        app()
    except StartupError as exc:
        if os.environ.get("LOG_LEVEL", "").strip().lower() == "debug":
            traceback.print_exception(exc)
        for line in exc.lines:
            typer.echo(f"mediaplane: {line}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
