"""`dashboard`: the web dashboard of a store, on this machine unless a token is given."""

from __future__ import annotations

from pathlib import Path

import click

from .common import ExitCode, command, existing_store, run_async, settings

__all__ = ["dashboard"]


@command(ExitCode.USAGE, ExitCode.STORE)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="the address to listen on; one beyond loopback needs --token")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free port")
@click.option("--token", envvar="ERGON_DASHBOARD_TOKEN", show_envvar=True, metavar="TOKEN",
              help="the secret every request must carry (16 characters at least; prefer the variable: "
                   "arguments are visible to other users); default: a random one, printed in the link")
@click.option("--read-only", is_flag=True, help="show no action (signal, cancel, retry, fork) and refuse them")
@click.option("--chaos-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="where chaos reports are read from (default: where `chaos` saves them)")
@click.option("--refresh", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="seconds between the live parts' refreshes")
def dashboard(host: str, port: int, token: str | None, read_only: bool, chaos_dir: Path | None,
              refresh: float) -> int:
    """Serve the web dashboard of the store: flows by status over time, supervisors and workers,
    the flows with filters, one flow's timeline and history with actions, chaos reports.

    Prints the link to open (it carries the token once) and serves until Ctrl-C.
    """
    try:
        from ..dashboard import DashboardServer
    except ImportError as exc:
        raise click.UsageError(f"the dashboard needs its extra: pip install 'ergon-actors[dashboard]' ({exc})") \
            from None
    chosen = settings()

    async def go() -> int:
        await (await existing_store(chosen)).close()  # a store that is not there is an error, not created
        server = DashboardServer(chosen.store, host=host, port=port, token=token, read_only=read_only,
                                 chaos_dir=chaos_dir, refresh=refresh)
        click.echo(f"dashboard of {server.dashboard.store_name}; open this link (it carries the token):", err=True)
        click.echo(server.url)
        await server.serve(handle_signals=True)
        return ExitCode.OK

    return run_async(go())
