"""The Contracts page: HTML for people, rendered on the server from the documents the HTTP API
serves (the same services give both, so the page and the API cannot disagree).

Only text in, text out: no web framework and no store here (`server.py` reads, then calls these).
Every value written into the page goes through `markup.escaped` (html.escape); money through
`money.format_money`, its exact value in the `title`; every time is UTC and the pages say so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlencode

from bulk_rating.markup import DASH, STYLE, escaped, when
from bulk_rating.money import exact_money, format_decimal, format_money


def _url(*parts: str, **query: str) -> str:
    path = "/ui/" + "/".join(quote(p, safe="") for p in parts)
    return path + (f"?{urlencode(query)}" if query else "")


def money(amount: Any, credit_type: dict[str, Any] | None) -> str:
    """An amount's cell content: shown for people, exact on hover."""
    if amount is None:
        return ""
    kind = credit_type or {}
    value = Decimal(str(amount))
    name = str(kind.get("name", ""))
    shown = format_money(value, str(kind.get("id", "")), name)
    return (
        f'<span class="money" title="{escaped(exact_money(value, name))}">{escaped(shown)}</span>'
    )


def quantity(value: Any) -> str:
    if value is None:
        return ""
    exact = Decimal(str(value))
    return f'<span title="{escaped(format_decimal(exact))}">{escaped(f"{exact.normalize():,f}")}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    """`rows` are cells already made HTML (values escaped by their makers)."""
    head = "".join(
        f"<th{' class=num' if n in numeric else ''}>{escaped(h)}</th>"
        for n, h in enumerate(headers)
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


def layout(
    title: str, body: str, crumbs: Sequence[tuple[str, str]] = (), style_added: str = ""
) -> str:
    trail = " / ".join(f'<a href="{escaped(href)}">{escaped(name)}</a>' for name, href in crumbs)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escaped(title)} · bulk_rating</title><style>{STYLE}{style_added}</style>"
        '</head><body><header><a href="/ui/"><b>bulk_rating</b></a><a href="/ui/">Customers</a>'
        '<a href="/ui/reconciliations">Reconciliations</a>'
        '<span class="utc">All dates and times are UTC</span>'
        '<a href="/ui/logout">Log out</a></header>'
        f"<main>{f'<nav class=crumbs>{trail}</nav>' if trail else ''}"
        f"<h1>{escaped(title)}</h1>{body}</main></body></html>"
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
        f'<input type="hidden" name="next" value="{escaped(next_path)}">'
        '<button type="submit">Log in</button></form></body></html>'
    )


def customers_page(
    customers: Sequence[dict[str, Any]], search: str, page: int, per_page: int, total: int
) -> str:
    """One page of the customers (those matching `search`), with links to the pages beside."""
    rows = [
        (
            f'<a href="{escaped(_url("customers", c["id"]))}">{escaped(c["name"])}</a>',
            escaped(c["id"]),
        )
        for c in customers
    ]
    first = (page - 1) * per_page + 1
    shown = (
        f"{first:,}{DASH}{first + len(rows) - 1:,} of {total:,}"
        if len(rows) < total
        else f"{total:,}"
    )
    form = (
        '<form class="search" method="get" action="/ui/">'
        f'<input name="q" value="{escaped(search)}" placeholder="name or id" aria-label="search">'
        ' <button type="submit">Search</button></form><p class="muted">'
        f"{shown if rows or page == 1 else f'no page {page:,}: {total:,}'}"
        f" customer{'s' if total != 1 else ''}"
        f"{f' matching “{escaped(search)}”' if search else ''}</p>"
    )

    def link(to: int, text: str) -> str:
        query = {"q": search, "page": str(to)} if search else {"page": str(to)}
        return f'<a href="{escaped(_url(**query))}">{text}</a>'

    pager = " ".join(
        [
            *([link(page - 1, "← previous")] if page > 1 and rows else []),
            *([link(page + 1, "next →")] if first - 1 + len(rows) < total else []),
        ]
    )
    return layout(
        "Customers",
        form
        + _table(("name", "id"), rows, set())
        + (f'<p class="pager">{pager}</p>' if pager else ""),
    )


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
                f'<a href="{escaped(_url("customers", customer["id"], "contracts", contract["id"]))}">'
                f"{escaped(state['name'] or contract['id'])}</a>",
                escaped(when(state["starting_at"])),
                escaped(when(state["ending_before"])) or '<span class="muted">open</span>',
                escaped(state["usage_statement_schedule"]["frequency"]),
                escaped(when(generation.get(contract["id"]))),
                "<br>".join(balances) or '<span class="muted">no commits or credits</span>',
            )
        )
    body = f"<dl><dt>id</dt><dd>{escaped(customer['id'])}</dd></dl><h2>Contracts</h2>" + _table(
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
    return f'<span class="tag {"draft" if status == "DRAFT" else ""}">{escaped(status)}</span>'


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
        f"<dl><dt>id</dt><dd>{escaped(contract['id'])}</dd>"
        f"<dt>starting at</dt><dd>{escaped(when(state['starting_at']))}</dd>"
        f"<dt>ending before</dt><dd>{escaped(when(state['ending_before'])) or 'open'}</dd>"
        f"<dt>billing frequency</dt><dd>{escaped(state['usage_statement_schedule']['frequency'])}</dd>"
        f"<dt>invoice generation from</dt><dd>{escaped(when(generation))}</dd>"
        f"<dt>rate card</dt><dd>{escaped(state['rate_card_id'])}</dd>"
        f'<dt>net balance</dt><dd id="net-balance">'
        f"{' · '.join(_credit_type_totals(_commitments(contract))) or 'no commits or credits'}"
        "</dd></dl>"
    )
    invoice_rows = [
        (
            f'<a href="{escaped(_url("customers", customer_id, "invoices", i["id"]))}">'
            f"{escaped(when(i['start_timestamp']))} {DASH} {escaped(when(i['end_timestamp']))}</a>",
            escaped(when(i.get("issued_at"))),
            _status(i),
            _origin(i),
            money(i["total"], i["credit_type"]),
            escaped(i.get("billable_status")),
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
                escaped(one.get("name") or s["id"]),
                escaped(s["type"]),
                f"{escaped(when(s['starting_at']))} {DASH} {escaped(when(s['ending_before']))}",
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
                escaped(line["name"]),
                escaped(f"applied {applied['type'].lower()}" if applied else line["type"]),
                escaped(
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
            f'text-anchor="end">{escaped(format_money(value, credit_type["id"], credit_type["name"]))}'
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
            f'data-total="{escaped(format_decimal(total))}"><title>{escaped(tip)}</title></rect>'
        )
        if n % every == 0:
            cx = x + step / 2
            parts.append(
                f'<text x="{cx:.1f}" y="{height - bottom + 14}" text-anchor="end" '
                f'transform="rotate(-40 {cx:.1f} {height - bottom + 14})">{escaped(label)}</text>'
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
        f"<dl><dt>id</dt><dd>{escaped(invoice['id'])}</dd>"
        f"<dt>period</dt><dd>{escaped(when(invoice['start_timestamp']))} {DASH} "
        f"{escaped(when(invoice['end_timestamp']))}</dd>"
        f"<dt>issued</dt><dd>{escaped(when(invoice.get('issued_at')))}</dd>"
        f"<dt>status</dt><dd>{_status(invoice)} {_origin(invoice)}</dd>"
        f"<dt>billable status</dt><dd>{escaped(invoice.get('billable_status'))}</dd>"
        f"<dt>subtotal</dt><dd>{money(invoice.get('subtotal'), kind)}</dd>"
        f'<dt>total</dt><dd id="invoice-total">{money(invoice["total"], kind)}</dd></dl>'
    )
    other = "HOUR" if window_size == "DAY" else "DAY"
    switch = (
        f'<a href="{escaped(_url("customers", customer_id, "invoices", invoice["id"], window=other.lower()))}">'
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


def reconciliations_page(runs: Sequence[dict[str, Any]]) -> str:
    """The kept reconciliations of legacy invoices against the imported ones, the latest first."""
    if not runs:
        return layout(
            "Reconciliations",
            "<p>No reconciliation is kept yet: <code>bulk-rating reconcile --legacy FILE</code>"
            " (or the nightly batch with <code>--legacy</code>) keeps one each time it runs"
            " against the database.</p>",
        )
    rows = [
        (
            f'<a href="{escaped(_url("reconciliations", str(r["reconciliation_id"])))}">'
            f"{escaped(r['reconciliation_id'])}</a>",
            escaped(when(r["run_at"])),
            escaped(", ".join(r["legacy_files"] or [])),
            escaped(f"{r['invoices_compared']:,}"),
            escaped(f"{r['differences']:,}"),
            escaped(format_decimal(r["tolerance"])),
        )
        for r in runs
    ]
    return layout(
        "Reconciliations",
        _table(
            (
                "run",
                "ran at",
                "legacy files",
                "invoices compared",
                "differences",
                "tolerance (units)",
            ),
            rows,
            numeric={3, 4, 5},
        ),
    )


def reconciliation_page(reconciliation_id: int, sections: str, style_added: str) -> str:
    """One kept reconciliation: the sections of its report (reconcile.report_sections)."""
    return layout(
        f"Reconciliation {reconciliation_id}",
        sections,
        crumbs=[("Reconciliations", _url("reconciliations"))],
        style_added=style_added,
    )


def not_found_page(what: str) -> str:
    return layout("Not found", f"<p>{escaped(what)}</p>", [("Customers", "/ui/")])
