"""Schedules: how a graph runs, as a memory plan (harness.schedules.plan).

One module per variant (unfused, fused, msf, patch, reordered), each declaring
a `SCHEDULE` (harness.schedules.registry); the stage kinds they use
(harness.schedules.stages) and the tile geometry (harness.schedules.geometry)
are shared.
"""
from harness.schedules.registry import (NotApplicable, Option, Schedule, all_schedules, cli_options, get_schedule,
                                        make_plan, parse_cli_options, schedule_names)

__all__ = ["NotApplicable", "Option", "Schedule", "all_schedules", "cli_options", "get_schedule", "make_plan",
           "parse_cli_options", "schedule_names"]
