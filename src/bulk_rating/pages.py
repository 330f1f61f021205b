"""The Contracts page: HTML for people, rendered on the server from the documents the HTTP API
serves (the same services give both, so the page and the API cannot disagree).

Only text in, text out: no web framework and no store here (`server.py` reads, then calls these).
Every value written into the page goes through `_e` (html.escape); money through
`money.format_money`, its exact value in the `title`; every time is UTC and the pages say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from bulk_rating.money import exact_money, format_decimal, format_money

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


def _e(value: Any) -> str:
    """Any value as HTML text (None as an empty cell)."""
    return "" if value is None else escape(str(value), quote=True)


def _url(*parts: str, **query: str) -> str:
    path = "/ui/" + "/".join(quote(p, safe="") for p in parts)
    return path + (f"?{urlencode(query)}" if query else "")


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


def money(amount: Any, credit_type: dict[str, Any] | None) -> str:
    """An amount's cell content: shown for people, exact on hover."""
    if amount is None:
        return ""
    kind = credit_type or {}
    value = Decimal(str(amount))
    name = str(kind.get("name", ""))
    shown = format_money(value, str(kind.get("id", "")), name)
    return f'<span class="money" title="{_e(exact_money(value, name))}">{_e(shown)}</span>'


def quantity(value: Any) -> str:
    if value is None:
        return ""
    exact = Decimal(str(value))
    return f'<span title="{_e(format_decimal(exact))}">{_e(f"{exact.normalize():,f}")}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """`rows` are cells already made HTML (values escaped by their makers)."""
    head = "".join(
        f"<th{' class=num' if n in numeric else ''}>{_e(h)}</th>" for n, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if n in numeric else ''}>{c}</td>" for n, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def layout(title: str, body: str, crumbs: Sequence[tuple[str, str]] = ()) -> str:
    trail = " / ".join(f'<a href="{_e(href)}">{_e(name)}</a>' for name, href in crumbs)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)} · bulk_rating</title><style>{STYLE}</style></head><body>"
        '<header><a href="/ui/"><b>bulk_rating</b></a><a href="/ui/">Customers</a>'
        '<span class="utc">All dates and times are UTC</span>'
        '<a href="/ui/logout">Log out</a></header>'
        f"<main>{f'<nav class=crumbs>{trail}</nav>' if trail else ''}"
        f"<h1>{_e(title)}</h1>{body}</main></body></html>"
    )


def login_page(*, refused: bool, next_path: str) -> str:
    error = '<p class="error" role="alert">That token is not accepted.</p>' if refused else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Log in · bulk_rating</title><style>{STYLE}</style></head><body>"
        '<form class="login" method="post" action="/ui/login">'
        "<h1>bulk_rating</h1><p>The API's bearer token opens these pages.</p>"
        f'{error}<label for="token">API token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required>'
        f'<input type="hidden" name="next" value="{_e(next_path)}">'
        '<button type="submit">Log in</button></form></body></html>'
    )


def customers_page(customers: Sequence[dict[str, Any]], search: str) -> str:
    rows = [
        (f'<a href="{_e(_url("customers", c["id"]))}">{_e(c["name"])}</a>', _e(c["id"]))
        for c in customers
    ]
    form = (
        '<form class="search" method="get" action="/ui/">'
        f'<input name="q" value="{_e(search)}" placeholder="name or id" aria-label="search">'
        ' <button type="submit">Search</button></form><p class="muted">'
        f"{len(rows)} customer{'s' if len(rows) != 1 else ''}"
        f"{f' matching “{_e(search)}”' if search else ''}</p>"
    )
    return layout("Customers", form + _table(("name", "id"), rows, set()))


def _credit_type_totals(commits: Sequence[dict[str, Any]]) -> list[str]:
    """A contract's net balance per credit type: the balances of its commits and credits (each
    one's getNetBalance rule: what remains of its segments usable now, a negative as 0)."""
    totals: dict[str, tuple[dict[str, Any], Decimal]] = {}
    for c in commits:
        kind = c["access_schedule"]["credit_type"]
        _, sum_ = totals.get(kind["id"], (kind, Decimal(0)))
        totals[kind["id"]] = (kind, sum_ + Decimal(str(c.get("balance") or 0)))
    return [money(total, kind) for kind, total in totals.values()]


def _commitments(contract: dict[str, Any]) -> list[dict[str, Any]]:
    state = contract["current"]
    return [*state["commits"], *state["credits"]]


def customer_page(
    customer: dict[str, Any], contracts: Sequence[dict[str, Any]], generation: dict[str, str]
) -> str:
    rows = []
    for contract in contracts:
        state = contract["current"]
        balances = _credit_type_totals(_commitments(contract))
        rows.append(
            (
                f'<a href="{_e(_url("customers", customer["id"], "contracts", contract["id"]))}">'
                f"{_e(state['name'] or contract['id'])}</a>",
                _e(when(state["starting_at"])),
                _e(when(state["ending_before"])) or '<span class="muted">open</span>',
                _e(state["usage_statement_schedule"]["frequency"]),
                _e(when(generation.get(contract["id"]))),
                "<br>".join(balances) or '<span class="muted">no commits or credits</span>',
            )
        )
    body = f"<dl><dt>id</dt><dd>{_e(customer['id'])}</dd></dl><h2>Contracts</h2>" + _table(
        (
            "contract",
            "starting at",
            "ending before",
            "billing frequency",
            "invoice generation from",
            "net balance",
        ),
        rows,
        {5},
    )
    return layout(customer["name"], body, [("Customers", "/ui/")])


def _status(invoice: dict[str, Any]) -> str:
    status = invoice["status"]
    return f'<span class="tag {"draft" if status == "DRAFT" else ""}">{_e(status)}</span>'


def _origin(invoice: dict[str, Any]) -> str:
    if invoice.get("origin") == "HISTORICAL_IMPORT":
        return '<span class="tag imported">Imported</span>'
    return '<span class="tag">Generated</span>'


def contract_page(
    customer: dict[str, Any],
    contract: dict[str, Any],
    invoices: Sequence[dict[str, Any]],
    segments: Sequence[dict[str, Any]],
    generation: str | None,
) -> str:
    """`segments`: the contract's commit and credit segments (customer_balances rows: id, type,
    segment_id, starting_at, ending_before, credit_type_id, amount, remaining, active)."""
    state = contract["current"]
    customer_id = customer["id"]
    facts = (
        f"<dl><dt>id</dt><dd>{_e(contract['id'])}</dd>"
        f"<dt>starting at</dt><dd>{_e(when(state['starting_at']))}</dd>"
        f"<dt>ending before</dt><dd>{_e(when(state['ending_before'])) or 'open'}</dd>"
        f"<dt>billing frequency</dt><dd>{_e(state['usage_statement_schedule']['frequency'])}</dd>"
        f"<dt>invoice generation from</dt><dd>{_e(when(generation))}</dd>"
        f"<dt>rate card</dt><dd>{_e(state['rate_card_id'])}</dd>"
        f'<dt>net balance</dt><dd id="net-balance">'
        f"{' · '.join(_credit_type_totals(_commitments(contract))) or 'no commits or credits'}"
        "</dd></dl>"
    )
    invoice_rows = [
        (
            f'<a href="{_e(_url("customers", customer_id, "invoices", i["id"]))}">'
            f"{_e(when(i['start_timestamp']))} {DASH} {_e(when(i['end_timestamp']))}</a>",
            _e(when(i.get("issued_at"))),
            _status(i),
            _origin(i),
            money(i["total"], i["credit_type"]),
            _e(i.get("billable_status")),
        )
        for i in invoices
    ]
    by_id = {c["id"]: c for c in _commitments(contract)}
    segment_rows = []
    for s in segments:
        one = by_id.get(s["id"], {})
        kind = one.get("access_schedule", {}).get("credit_type", {"id": s["credit_type_id"]})
        segment_rows.append(
            (
                _e(one.get("name") or s["id"]),
                _e(s["type"]),
                f"{_e(when(s['starting_at']))} {DASH} {_e(when(s['ending_before']))}",
                money(s["amount"], kind),
                money(s["remaining"], kind),
                "usable now" if s["active"] else '<span class="muted">not now</span>',
            )
        )
    body = (
        facts
        + "<h2>Invoices</h2>"
        + _table(
            ("period", "issued", "status", "source", "total", "billable status"),
            invoice_rows,
            {4},
        )
        + "<h2>Commits and credits</h2>"
        + _table(("name", "type", "segment", "amount", "remaining", "access"), segment_rows, {3, 4})
    )
    return layout(
        state["name"] or contract["id"],
        body,
        [("Customers", "/ui/"), (customer["name"], _url("customers", customer_id))],
    )


def _line_rows(invoice: dict[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for line in invoice["line_items"]:
        applied = line.get("applied_commit_or_credit")
        tier = line.get("tier")
        rows.append(
            (
                _e(line["name"]),
                _e(f"applied {applied['type'].lower()}" if applied else line["type"]),
                _e(
                    ""
                    if tier is None
                    else tier.get("level", tier)
                    if isinstance(tier, dict)
                    else tier
                ),
                money(line.get("unit_price"), line["credit_type"]),
                quantity(line.get("quantity")),
                money(line["total"], line["credit_type"]),
            )
        )
    return rows


def bar_chart(windows: Sequence[dict[str, Any]], credit_type: dict[str, Any]) -> str:
    """Inline SVG: a bar per breakdown window (its total), a y axis with money ticks and an x axis
    with the windows' start (UTC); each bar's exact value in its tooltip."""
    width, height, left, right, top, bottom = 1100, 300, 90, 16, 16, 56
    if not windows:
        return '<p class="muted">no breakdown windows</p>'
    totals = [Decimal(str(w["total"])) for w in windows]
    high, low = max(max(totals), Decimal(0)), min(min(totals), Decimal(0))
    flat = high == low  # every window 0: one tick, the bars on the axis
    span = Decimal(1) if flat else high - low
    high = low + span
    plot_w, plot_h = width - left - right, height - top - bottom

    def y(value: Decimal) -> float:
        return top + float((high - value) / span) * plot_h

    step = plot_w / len(windows)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
        f'aria-label="total per breakdown window">'
    ]
    for n in range(1 if flat else 5):  # gridlines and ticks
        value = low + span * n / 4
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(value):.1f}" '
            f'y2="{y(value):.1f}"/><text x="{left - 6}" y="{y(value) + 4:.1f}" '
            f'text-anchor="end">{_e(format_money(value, credit_type["id"], credit_type["name"]))}'
            "</text>"
        )
    every = max(1, len(windows) // 16)  # at most about 16 labels on the x axis
    for n, (w, total) in enumerate(zip(windows, totals, strict=True)):
        x = left + n * step
        top_y, base_y = y(max(total, Decimal(0))), y(min(total, Decimal(0)))
        label = when(w["breakdown_start_timestamp"])
        tip = (
            f"{when(w['breakdown_start_timestamp'])} {DASH} {when(w['breakdown_end_timestamp'])} UTC: "
            f"{format_money(total, credit_type['id'], credit_type['name'])} "
            f"({exact_money(total, credit_type['name'])})"
        )
        parts.append(
            f'<rect class="bar" x="{x + step * 0.1:.1f}" y="{top_y:.1f}" '
            f'width="{max(step * 0.8, 1):.1f}" height="{max(base_y - top_y, 0.5):.1f}" '
            f'data-total="{_e(format_decimal(total))}"><title>{_e(tip)}</title></rect>'
        )
        if n % every == 0:
            cx = x + step / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{height - bottom + 14}" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {height - bottom + 14})">{_e(label)}</text>'
            )
    parts.append(
        f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}"/>'
        f'<line class="axis" x1="{left}" x2="{width - right}" y1="{y(Decimal(0)):.1f}" '
        f'y2="{y(Decimal(0)):.1f}"/></svg>'
    )
    return "".join(parts)


def invoice_page(
    customer: dict[str, Any],
    invoice: dict[str, Any],
    windows: Sequence[dict[str, Any]],
    window_size: str,
) -> str:
    kind = invoice["credit_type"]
    customer_id = customer["id"]
    contract_id = invoice.get("contract_id")
    facts = (
        f"<dl><dt>id</dt><dd>{_e(invoice['id'])}</dd>"
        f"<dt>period</dt><dd>{_e(when(invoice['start_timestamp']))} {DASH} "
        f"{_e(when(invoice['end_timestamp']))}</dd>"
        f"<dt>issued</dt><dd>{_e(when(invoice.get('issued_at')))}</dd>"
        f"<dt>status</dt><dd>{_status(invoice)} {_origin(invoice)}</dd>"
        f"<dt>billable status</dt><dd>{_e(invoice.get('billable_status'))}</dd>"
        f"<dt>subtotal</dt><dd>{money(invoice.get('subtotal'), kind)}</dd>"
        f'<dt>total</dt><dd id="invoice-total">{money(invoice["total"], kind)}</dd></dl>'
    )
    other = "HOUR" if window_size == "DAY" else "DAY"
    switch = (
        f'<a href="{_e(_url("customers", customer_id, "invoices", invoice["id"], window=other.lower()))}">'
        f"{'hourly' if other == 'HOUR' else 'daily'}</a>"
    )
    body = (
        facts
        + "<h2>Line items</h2>"
        + _table(
            ("line", "kind", "tier", "unit price", "quantity", "total"),
            _line_rows(invoice),
            {3, 4, 5},
        )
        + f"<h2>{'Daily' if window_size == 'DAY' else 'Hourly'} breakdown "
        f'<span class="muted">({len(windows)} windows, UTC; show {switch})</span></h2>'
        + bar_chart(windows, kind)
    )
    crumbs = [("Customers", "/ui/"), (customer["name"], _url("customers", customer_id))]
    if contract_id:
        crumbs.append(("contract", _url("customers", customer_id, "contracts", contract_id)))
    return layout(
        f"Invoice {when(invoice['start_timestamp'])} {DASH} {when(invoice['end_timestamp'])}",
        body,
        crumbs,
    )


def not_found_page(what: str) -> str:
    return layout("Not found", f"<p>{_e(what)}</p>", [("Customers", "/ui/")])
