"""`completion SHELL`: the script that gives the shell completion of commands and options."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

from .common import ExitCode, command

__all__ = ["completion"]

COMPLETE_VAR = "_ERGON_ACTORS_COMPLETE"


@command(ExitCode.USAGE)
@click.argument("shell", type=click.Choice(("bash", "zsh", "fish")))
def completion(shell: str) -> int:
    """Print the completion script for SHELL, for the `ergon-actors` command installed by pip.

    \b
    bash:  eval "$(ergon-actors completion bash)"       (in ~/.bashrc)
    zsh:   eval "$(ergon-actors completion zsh)"        (in ~/.zshrc)
    fish:  ergon-actors completion fish > ~/.config/fish/completions/ergon-actors.fish
    """
    root = click.get_current_context().find_root().command
    complete = get_completion_class(shell)
    assert complete is not None  # click ships bash, zsh and fish
    click.echo(complete(root, {}, "ergon-actors", COMPLETE_VAR).source())
    return ExitCode.OK
