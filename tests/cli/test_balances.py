"""`bulk-rating balances`: segments and the net balance (getNetBalance semantics)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import SAMPLES, USD, run_cli


def test_the_acme_commit_after_its_history(db: Path) -> None:
    # 50,000 prepaid: June takes 12,500 and July 25,000; 12,500 remain.
    imported = run_cli(
        "import", SAMPLES / "acme-commit", "--db", db, "--as-of", "2024-08-15", "--json"
    )
    assert [i["total"] for i in imported.json()["data"]] == [0, 0]

    result = run_cli(
        "balances", "--customer", "cus_acme", "--db", db, "--as-of", "2024-08-15", "--json"
    )

    assert result.exit_code == 0, result.stderr
    document = result.json()
    assert document["data"] == [
        {
            "id": "commit_acme_2024",
            "type": "PREPAID",
            "segment_id": "segment_2024",
            "starting_at": "2024-06-01T00:00:00Z",
            "ending_before": "2025-06-01T00:00:00Z",
            "credit_type_id": USD,
            "amount": 50000,
            "remaining": 12500,
        }
    ]
    assert document["net_balance"] == [{"credit_type_id": USD, "balance": 12500}]


def test_before_july_was_invoiced_and_after_the_segment_expired(db: Path) -> None:
    run_cli("import", SAMPLES / "acme-commit", "--db", db, "--as-of", "2024-08-15")

    july_first = run_cli(
        "balances", "--customer", "cus_acme", "--db", db, "--as-of", "2024-07-15", "--json"
    )
    expired = run_cli(
        "balances", "--customer", "cus_acme", "--db", db, "--as-of", "2025-07-01", "--json"
    )

    assert july_first.json()["data"][0]["remaining"] == 37500  # only June's deduction by then
    assert expired.json()["net_balance"] == []  # an expired segment counts for nothing
    assert "net balance" not in run_cli("balances", "--customer", "cus_nobody", "--db", db).stdout


def test_a_file_of_another_version_is_named_not_a_traceback(db: Path) -> None:
    import duckdb

    run_cli("import", SAMPLES / "acme-commit", "--db", db, "--as-of", "2024-08-15")
    con = duckdb.connect(str(db))
    con.execute("UPDATE _schema SET version = 1")
    con.close()

    result = run_cli("balances", "--customer", "cus_acme", "--db", db)

    assert result.exit_code == 2
    assert "another version" in result.stderr


def test_balances_for_people_keep_ids_whole_and_name_the_money(db: Path) -> None:
    """At 80 columns ids fold onto a second line instead of losing characters, and amounts are
    dollars and cents (the credit type's name, never its UUID)."""
    assert (
        run_cli("import", SAMPLES / "acme-commit", "--db", db, "--as-of", "2024-08-15").exit_code
        == 0
    )
    shown = run_cli("balances", "--customer", "cus_acme", "--db", db, "--as-of", "2024-08-15")
    assert "…" not in shown.stdout  # nothing cut
    lines = shown.stdout.splitlines()
    row = next(n for n, line in enumerate(lines) if "PREPAID" in line)
    first, below = lines[row].split(), lines[row + 1].split()
    assert first[1] + below[0] == "commit_acme_2024"  # the id, folded onto two lines
    assert "$500.00" in first
    assert "net balance $125.00" in shown.stdout
    assert "2714e483" not in shown.stdout  # the credit type by name, never its UUID
