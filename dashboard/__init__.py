"""The cost dashboard: a page on the gateway's loopback server (`/dashboard`, behind its token) that plots
model spend per day per tier and per executor against the budget, free and paid calls, the P1→P2 moments and
why, tasks per day by outcome, and latency, over 7, 30 or 90 days, refreshing itself.

>>> app = DashboardApp(gateway_app, token, dashboard_source(cfg))
"""
from __future__ import annotations

from config import Config

from .figures import PERIODS, Caps, NoDatabase, read_figures
from .web import PATH, DashboardApp, DashboardSource, dashboard_url

__all__ = ["PATH", "PERIODS", "Caps", "DashboardApp", "DashboardSource", "NoDatabase", "dashboard_source",
           "dashboard_url", "read_figures"]


def dashboard_source(cfg: Config) -> DashboardSource:
    """What the page reads, from the config: the database, the caps (and warning shares), the paid tiers."""
    paid = tuple(name for name, tier in cfg.litellm.tiers.items() if tier.paid) if cfg.litellm else ()
    caps = Caps(cfg.budget.daily_usd, cfg.budget.monthly_usd, tuple(getattr(cfg.budget, "warn_at", ())))
    return DashboardSource(cfg.database_path, caps, paid)
