"""The code version a run serves: as set, or derived from the source of the modules it serves."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

from ..config import Settings
from .worker import discover_flows

__all__ = ["AUTO", "code_version", "resolve_version"]

AUTO = "auto"  # the version setting that asks for code_version()


def code_version(modules: Sequence[str]) -> str:
    """12 hex digits of a SHA-256 of the source files of `modules` and of their flow classes' modules.

    Raises:
        ImportError: a module cannot be imported.
        FlowDefinitionError: a module defines no flow type, or an invalid one.
    """
    classes = discover_flows(list(modules))
    digest = hashlib.sha256()
    for name in sorted(set(modules) | {cls.__module__ for cls in classes}):
        path = getattr(sys.modules[name], "__file__", None)
        digest.update(name.encode() + b"\0" + (Path(path).read_bytes() if path else b"") + b"\0")
    return digest.hexdigest()[:12]


def resolve_version(settings: Settings, modules: Sequence[str]) -> Settings:
    """`settings` with its version "auto" replaced by the code version of `modules`."""
    return settings.with_(version=code_version(modules)) if settings.version == AUTO else settings
