"""Where chaos runs leave their reports: one JSON file each in a report directory, newest kept."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from ..ops import to_json
from .report import ChaosReport

__all__ = ["default_report_dir", "save_report", "load_reports", "KEEP"]

KEEP = 50  # reports kept in a directory; older ones are removed as new ones arrive
MAX_REPORT_BYTES = 8 * 2**20  # a larger file is not read


def default_report_dir() -> Path:
    """The folder chaos reports go to unless told otherwise: ergon-chaos-reports in the temp folder."""
    return Path(tempfile.gettempdir()) / "ergon-chaos-reports"


def save_report(report: ChaosReport, directory: Path | None = None, *, now: float | None = None) -> Path:
    """Write the report as JSON (with the time it finished, `finished_at`) and remove all but the
    newest KEEP reports of the directory. Returns the file written."""
    folder = directory or default_report_dir()
    folder.mkdir(parents=True, exist_ok=True)
    finished = time.time() if now is None else now
    data = {**to_json(report.to_dict()), "finished_at": finished}
    path = folder / f"chaos-{int(finished * 1000):015d}-{os.getpid()}.json"
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data))
    temporary.replace(path)  # readers never see half a report
    for old in _files(folder)[KEEP:]:
        old.unlink(missing_ok=True)
    return path


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("chaos-*.json"), reverse=True)  # newest first: the name starts with the time


def load_reports(directory: Path | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest `limit` reports of the directory as JSON objects, newest first (unreadable files skipped)."""
    folder = directory or default_report_dir()
    reports: list[dict[str, Any]] = []
    for path in _files(folder) if folder.is_dir() else []:
        if len(reports) >= limit:
            break
        try:
            if path.stat().st_size > MAX_REPORT_BYTES:
                continue
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed meanwhile, or not a report
        if isinstance(data, dict):
            reports.append({**data, "file": path.name})
    return reports
