"""Pricing stories with hand-checked numbers (all amounts in USD cents)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tests.conftest import (
    acme,
    add_events_with_a_price_change,
    import_json,
    invoice,
    line,
    query,
    run_cli,
    write_dataset,
)

JUNE = ("2024-06-01T00:00:00Z", "2024-07-01T00:00:00Z")


def _day(d: int) -> tuple[str, str]:
    return f"2024-06-{d:02d}T00:00:00Z", f"2024-06-{d + 1:02d}T00:00:00Z"


def _hour(h: int) -> tuple[str, str]:
    return f"2024-06-03T{h:02d}:00:00Z", (
        f"2024-06-03T{h + 1:02d}:00:00Z" if h < 23 else "2024-06-04T00:00:00Z"
    )


def test_tiered_window_crossing_a_tier_edge_takes_both_tiers(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    # Storage: first 1000 GB-days at 2.5, then 1.75. June 1: 600 (all tier 1 = 1500);
    # June 2: 600 = 400 x 2.5 (1000) + 200 x 1.75 (350). Invoice: 2500 + 350 = 2850.
    files = acme()
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [line("prod_storage", *JUNE, windows=[(*_day(1), 600), (*_day(2), 600)])],
            granularity="DAY",
        )
    ]
    document = import_json(db, dataset, files)

    (june,) = document["data"]
    assert june["total"] == 2850
    tiers = [
        (i["tier"]["level"], i["tier"]["starting_at"], i["quantity"], i["unit_price"], i["total"])
        for i in june["line_items"]
    ]
    assert tiers == [(1, "0", 1000, Decimal("2.5"), 2500), (2, "1000", 200, Decimal("1.75"), 350)]
    rows = query(
        db,
        """SELECT strftime(window_start, '%d'), quantity, unit_price, amount
                        FROM invoice_breakdowns ORDER BY window_start, unit_price DESC""",
    )
    assert rows == [
        ("01", 600, Decimal("2.5"), 1500),
        ("02", 400, Decimal("2.5"), 1000),
        ("02", 200, Decimal("1.75"), 350),
    ]
    # Daily rows stay per line item (per tier); per product and day they add up to the window.
    daily = query(
        db,
        """SELECT strftime(window_start, '%d'), sum(quantity), sum(amount) FROM breakdowns_daily
                         GROUP BY product_id, window_start ORDER BY 1""",
    )
    assert daily == [("01", 600, 1500), ("02", 600, 1350)]


def test_tier_position_accumulates_over_lines_in_time_order(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    # Two lines of one product: the later window (June 5, 900) comes second in time even though
    # its line comes first, so June 4 (300) is tier 1 and June 5 crosses at 700:
    # 300 x 2.5 = 750; 700 x 2.5 = 1750; 200 x 1.75 = 350. Total 2850.
    files = acme()
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [
                line(
                    "prod_storage",
                    *JUNE,
                    windows=[(*_day(5), 900)],
                    presentation_group_values={"team": "b"},
                ),
                line(
                    "prod_storage",
                    *JUNE,
                    windows=[(*_day(4), 300)],
                    presentation_group_values={"team": "a"},
                ),
            ],
            granularity="DAY",
        )
    ]
    (june,) = import_json(db, dataset, files)["data"]
    assert june["total"] == 2850
    assert [
        (i["presentation_group_values"]["team"], i["quantity"], i["total"])
        for i in june["line_items"]
    ] == [("b", 700, 1750), ("b", 200, 350), ("a", 300, 750)]


def test_rate_change_between_windows_prices_each_window_at_its_own_rate(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    # Events: 3 until June 15, 4 from June 15. June 14: 10 x 3 = 30; June 15: 10 x 4 = 40.
    files = acme()
    add_events_with_a_price_change(files)
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [line("prod_events", *JUNE, windows=[(*_day(14), 10), (*_day(15), 10)])],
            granularity="day",
        )
    ]
    (june,) = import_json(db, dataset, files)["data"]

    assert june["total"] == 70
    assert [
        (i["unit_price"], i["quantity"], i["total"], i["starting_at"], i["ending_before"])
        for i in june["line_items"]
    ] == [
        (3, 10, 30, "2024-06-01T00:00:00Z", "2024-06-15T00:00:00Z"),
        (4, 10, 40, "2024-06-15T00:00:00Z", "2024-07-01T00:00:00Z"),
    ]


def test_hourly_windows_sum_to_their_line_and_roll_up_to_days(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    # Compute in us-east-1 at 4.8: 24 hours x 1.5 = 36 vCPU-hours x 4.8 = 172.8 cents.
    files = acme()
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [
                line(
                    "prod_compute",
                    *JUNE,
                    windows=[(*_hour(h), "1.5") for h in range(24)],
                    pricing_group_values={"region": "us-east-1"},
                )
            ],
            granularity="HOUR",
        )
    ]
    (june,) = import_json(db, dataset, files)["data"]

    assert june["total"] == Decimal("172.8")
    assert june["line_items"][0]["quantity"] == 36
    assert june["line_items"][0]["pricing_group_values"] == {"region": "us-east-1"}
    hourly = query(db, "SELECT count(*), sum(quantity), sum(amount) FROM breakdowns_hourly")
    assert hourly == [(24, Decimal(36), Decimal("172.8"))]
    daily = query(
        db,
        "SELECT strftime(window_start, '%Y-%m-%d'), quantity, amount, windows FROM breakdowns_daily",
    )
    assert daily == [("2024-06-03", Decimal(36), Decimal("172.8"), 24)]


def test_pricing_group_values_choose_the_rate_and_amounts_keep_every_digit(
    db: Path, dataset
) -> None:  # type: ignore[no-untyped-def]
    # eu-west-1 at 5.6: 0.123456789 x 5.6 = 0.6913580184 (not rounded); us-east-1 at 4.8: 2 x 4.8 = 9.6.
    files = acme()
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [
                line(
                    "prod_compute",
                    *JUNE,
                    quantity="0.123456789",
                    pricing_group_values={"region": "eu-west-1"},
                ),
                line(
                    "prod_compute", *JUNE, quantity=2, pricing_group_values={"region": "us-east-1"}
                ),
            ],
        )
    ]
    (june,) = import_json(db, dataset, files)["data"]

    assert [(i["unit_price"], i["total"]) for i in june["line_items"]] == [
        (Decimal("5.6"), Decimal("0.6913580184")),
        (Decimal("4.8"), Decimal("9.6")),
    ]
    assert june["total"] == Decimal("10.2913580184")
    stored = query(db, "SELECT total FROM invoices WHERE origin = 'HISTORICAL_IMPORT'")
    assert stored == [(Decimal("10.2913580184"),)]


def test_json_numbers_are_exact_decimal_text(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    files = acme()
    files["invoices"]["invoices"] = [
        invoice(
            *JUNE,
            [
                line(
                    "prod_compute",
                    *JUNE,
                    quantity="0.000000001",
                    pricing_group_values={"region": "eu-west-1"},
                )
            ],
        )
    ]
    result = run_cli("import", dataset(files), "--db", db, "--as-of", "2024-08-15", "--json")

    assert '"total": 0.0000000056' in result.stdout
    assert "e-" not in result.stdout.lower().replace("presentation", "")


def test_non_utc_offsets_are_converted_before_any_check(db: Path, dataset) -> None:  # type: ignore[no-untyped-def]
    files = acme()
    files["invoices"]["invoices"] = [
        invoice(
            "2024-06-01T02:00:00+02:00",
            "2024-06-30T20:00:00-04:00",
            [
                line(
                    "prod_api_calls",
                    "2024-05-31T19:00:00-05:00",
                    "2024-07-01T00:00:00Z",
                    quantity=1,
                )
            ],
        )
    ]
    (june,) = import_json(db, dataset, files)["data"]

    assert (june["start_timestamp"], june["end_timestamp"]) == (
        "2024-06-01T00:00:00Z",
        "2024-07-01T00:00:00Z",
    )
    assert june["total"] == 1250


def test_a_json_file_alone_uses_the_stored_catalog_and_contracts(
    db: Path, dataset, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    files = acme()
    june_only = {"invoices": files["invoices"]["invoices"][:1], "preview": False}
    july_only = {"invoices": files["invoices"]["invoices"][1:], "preview": False}
    first = dataset(
        {"catalog": files["catalog"], "contracts": files["contracts"], "invoices": june_only}
    )
    assert run_cli("import", first, "--db", db, "--as-of", "2024-08-15").exit_code == 0
    later = tmp_path / "july.json"
    later.write_text(__import__("json").dumps(july_only))

    result = run_cli("import", later, "--db", db, "--as-of", "2024-08-15", "--json")
    assert result.exit_code == 0, result.stdout
    assert [i["total"] for i in result.json()["data"]] == [25000]
    assert query(db, "SELECT count(*) FROM invoices")[0][0] == 3  # June, July and the August draft


def _regional_table(
    tmp_path: Path, form: str, regions: list[str | None], teams: list[str | None] | None = None
) -> Path:
    """acme with two more compute rates and a usage table of one compute hour per region (June
    3), its pricing group values as one `pricing.region` column or as a JSON text column, and
    so its presentation group values (`teams`) when given."""
    files = acme()
    del files["invoices"]
    card = files["catalog"]["rate_cards"][0]
    for values, price in (({"region": 'zürich "a\\b"'}, 7), ({"region": ""}, 3)):
        card["rates"].append(
            {
                "product_id": "prod_compute",
                "starting_at": "2024-01-01T00:00:00Z",
                "entitled": True,
                "rate_type": "FLAT",
                "price": price,
                "pricing_group_values": values,
            }
        )
    hours = [_hour(h) for h in range(len(regions))]
    columns = {
        "customer_id": ["cus_acme"] * len(regions),
        "contract_id": ["con_acme_2024"] * len(regions),
        "product_id": ["prod_compute"] * len(regions),
        "inclusive_start_date": [a for a, _ in hours],
        "exclusive_end_date": [b for _, b in hours],
        "quantity": ["2"] * len(regions),
    }
    groups = {"pricing": ("region", regions), "presentation": ("team", teams)}
    for group, (key, values) in groups.items():
        if values is None:
            continue
        if form == "column":
            columns[f"{group}.{key}"] = values
        else:
            columns[f"{group}_group_values"] = [
                None if v is None else json.dumps({key: v}) for v in values
            ]
    (tmp_path / "usage").mkdir(parents=True)
    pq.write_table(pa.table(columns), tmp_path / "usage" / "part-0.parquet")
    return write_dataset(tmp_path, files)


def test_one_pricing_column_matches_rates_on_its_exact_values(tmp_path: Path) -> None:
    # One hour of 2 vCPU each: us-east-1 at 4.8 twice (19.2), the quoted and escaped value at 7
    # (14) and the empty text at 3 (6): 39.2. Read from a `pricing.region` column or from JSON
    # text, the same invoice.
    regions = ["us-east-1", 'zürich "a\\b"', "", "us-east-1"]
    results = []
    for form in ("column", "json"):
        data = _regional_table(tmp_path / form, form, regions)
        db = tmp_path / form / "store.duckdb"
        result = run_cli("import", data, "--db", db, "--as-of", "2024-08-15", "--json")
        assert result.exit_code == 0, result.stdout + result.stderr
        (june,) = result.json()["data"]
        results.append(
            (
                june["total"],
                sorted(
                    (i["pricing_group_values"]["region"], i["quantity"], i["total"])
                    for i in june["line_items"]
                ),
            )
        )
    assert (
        results[0]
        == results[1]
        == (
            Decimal("39.2"),
            [("", 2, 6), ("us-east-1", 4, Decimal("19.2")), ('zürich "a\\b"', 2, 14)],
        )
    )


def test_a_row_without_a_region_takes_no_regional_rate(tmp_path: Path) -> None:
    # prod_compute is priced by region only: a row with none has no rate, not the empty one's.
    data = _regional_table(tmp_path, "column", ["us-east-1", None])
    result = run_cli(
        "import", data, "--db", tmp_path / "store.duckdb", "--as-of", "2024-08-15", "--json"
    )
    assert result.exit_code == 1
    assert [(i["code"], i["row"]) for i in result.json()["issues"]] == [("NO_RATE", 2)]


def test_one_presentation_column_splits_lines_as_json_text_does(tmp_path: Path) -> None:
    # Four us-east-1 hours of 2 vCPU at 4.8: team "a" twice (19.2), team 'b "x"' once and no
    # team once (9.6 each): three lines, 38.4 in all, the same from a column or from JSON text.
    teams = ["a", 'b "x"', None, "a"]
    stored = []
    for form in ("column", "json"):
        data = _regional_table(tmp_path / form, form, ["us-east-1"] * 4, teams)
        db = tmp_path / form / "store.duckdb"
        result = run_cli("import", data, "--db", db, "--as-of", "2024-08-15")
        assert result.exit_code == 0, result.stdout + result.stderr
        stored.append(
            query(
                db,
                """SELECT presentation_group_values, quantity, total, windows FROM invoice_line_items
                   ORDER BY ALL""",
            )
        )
    assert (
        stored[0]
        == stored[1]
        == [
            ('{"team":"a"}', 4, Decimal("19.2"), 2),
            ('{"team":"b \\"x\\""}', 2, Decimal("9.6"), 1),
            (None, 2, Decimal("9.6"), 1),
        ]
    )
