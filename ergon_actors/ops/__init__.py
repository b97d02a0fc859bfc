"""Operating flows: find, inspect, follow, schedule, signal, retry, fork, migrate and cancel them;
cron schedules; pruning ended flows.

The command line and any dashboard call these; they take an open store (storage.open_store)
and hold no state of their own.
"""

from __future__ import annotations

from .actions import (Cancelled, ScheduleOutcome, SignalSent, cancel_flows, fork_flow, matching_live_flows,
                      migrate_flows, retry_flow, schedule_flow, send_signal)
from .args import flow_from_json
from .details import (FlowDetails, StepDetails, Wait, event_json, event_text, failure_json, flow_summary,
                      follow_history, inspect_flow)
from .schedules import (CronSchedule, create_schedule, delete_schedule, list_schedules, pause_schedule,
                        prune_flows, resume_schedule, schedule_json)
from .query import LIVE, FlowFilter, iter_flows, list_flows, parse_filter, parse_status, parse_time
from .values import Value, decode, iso, load_modules, to_json

__all__ = ["FlowFilter", "list_flows", "iter_flows", "parse_status", "parse_time", "parse_filter", "LIVE",
           "FlowDetails", "StepDetails", "Wait", "inspect_flow", "follow_history", "flow_summary",
           "failure_json", "event_json", "event_text", "schedule_flow", "send_signal", "retry_flow", "fork_flow",
           "migrate_flows",
           "matching_live_flows", "cancel_flows", "Cancelled", "ScheduleOutcome", "SignalSent",
           "flow_from_json", "Value", "decode", "iso", "load_modules", "to_json",
           "create_schedule", "list_schedules", "pause_schedule", "resume_schedule", "delete_schedule",
           "schedule_json", "prune_flows", "CronSchedule"]
