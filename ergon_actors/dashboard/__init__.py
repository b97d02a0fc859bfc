"""The web dashboard: overview, flows, one flow (timeline, history, actions) and chaos reports.

Needs the `dashboard` extra (pip install 'ergon-actors[dashboard]'); docs/dashboard.md.
"""

from __future__ import annotations

from .app import Dashboard, create_app
from .security import check_bind, is_loopback
from .server import DashboardServer

__all__ = ["create_app", "Dashboard", "DashboardServer", "check_bind", "is_loopback"]
