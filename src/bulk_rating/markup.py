"""What the Contracts page and the reconciliation report are both written with: their style
sheet, escaping and how a UTC moment reads. Text only: no store, no web framework."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

DASH = "\u2013"  # between a period's start and end
STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;
background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:10px 24px;display:flex;gap:24px;align-items:center}
header a{color:#fff;text-decoration:none}header .utc{margin-left:auto;opacity:.75;font-size:13px}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
nav.crumbs{font-size:13px;margin-bottom:8px}nav.crumbs a{color:#3559c7}
h1{font-size:22px;margin:8px 0 16px}h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #dde1e7}
th,td{padding:6px 10px;border-bottom:1px solid #eceff3;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600;font-size:13px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
a{color:#3559c7}.muted{color:#6b7380}.tag{font-size:12px;padding:1px 6px;border-radius:8px;
background:#e6ebf5}.tag.draft{background:#fff1cc}.tag.imported{background:#e3f4e8}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;
border:1px solid #dde1e7;padding:12px 16px;margin:0}dt{color:#6b7380}dd{margin:0}
form.search input{padding:6px 8px;font-size:15px;width:320px}
form.search button,form.login button{padding:6px 14px;font-size:15px}
.login{max-width:360px;margin:80px auto;background:#fff;border:1px solid #dde1e7;padding:24px}
.login input{width:100%;padding:8px;font-size:15px;box-sizing:border-box;margin:8px 0 16px}
.error{color:#b42318}svg text{font-size:11px;fill:#4a5260}svg .bar{fill:#4f7be8}
svg .axis{stroke:#8a93a3}svg .grid{stroke:#e3e6eb}
"""


def escaped(value: Any) -> str:
    """Any value as HTML text (None as an empty cell)."""
    return "" if value is None else escape(str(value), quote=True)


def when(timestamp: str | datetime | None) -> str:
    """An API timestamp ('2024-06-01T00:00:00Z', or a UTC datetime) as people read it: the
    date, and the time when it is not midnight; UTC (every page says so)."""
    if not timestamp:
        return ""
    if isinstance(timestamp, datetime):
        timestamp = timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    day, _, time = timestamp.partition("T")
    time = time.rstrip("Z")[:5]
    return day if time in ("", "00:00") else f"{day} {time}"
