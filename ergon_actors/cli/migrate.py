"""`migrate`: move live flows from one code version to another (docs/versioning.md)."""

from __future__ import annotations

import click

from .. import ops
from .common import ExitCode, command, existing_store, run_async, settings, style

__all__ = ["migrate"]


@command(ExitCode.USAGE, ExitCode.STORE)
@click.argument("flow_ids", nargs=-1, metavar="[FLOW_ID...]")
@click.option("--from", "from_version", metavar="A", help="move the live flows of version A")
@click.option("--to", "to_version", metavar="B", help="the version to move them to")
@click.option("--unpin", is_flag=True, help="move them to no version: the next worker of any version takes them")
def migrate(flow_ids: tuple[str, ...], from_version: str | None, to_version: str | None, unpin: bool) -> int:
    """Move live flows (pending, running or waiting) of version A, or the FLOW_IDs, to version B,
    so that the workers of a `run --version B` take them.

    Do it when version B's code replays A's flows: the same steps in the same order, or the
    changes guarded by patched(). A running flow moves for its next claim: its worker keeps it
    until it ends or its lease lapses.
    """
    if unpin == (to_version is not None):
        raise click.UsageError("give --to B, or --unpin")
    if from_version is None and not flow_ids:
        raise click.UsageError("name the flows to move: --from A, or their FLOW_IDs")
    chosen = settings()

    async def go() -> int:
        store = await existing_store(chosen)
        try:
            return await ops.migrate_flows(store, to_version, from_version=from_version,
                                           flow_ids=list(flow_ids) if flow_ids else None)
        finally:
            await store.close()

    moved = run_async(go())
    target = f"version {to_version}" if to_version is not None else "no version (any worker)"
    source = f" of version {from_version}" if from_version is not None else ""
    line = f"moved {moved} live flow{'' if moved == 1 else 's'}{source} to {target}"
    click.echo(line if moved else style(line + ": none matched", fg="yellow", err=False))
    return ExitCode.OK
