"""Step 2 of a bucketed run (buckets.py) on Spark: the only module that imports pyspark (the
optional extra `bulk-rating[spark]`).

Spark reads the usage files, hashes each row's contract into one of N buckets, gathers each
bucket's rows into one Arrow table and hands it to `buckets.rate_bucket` in a Python worker:
Spark moves Arrow tables and does no arithmetic (its decimal products round; the kernel's are
exact). One group per bucket of contracts, not per contract: a group costs tens of milliseconds.

Under spark-submit (`spark-submit .../bulk_rating/__main__.py import DATA --engine spark`), the
run uses the session and master spark-submit made.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from bulk_rating import buckets, load
from bulk_rating.errors import UsageError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# What a session needs whatever the cluster: UTC (Spark converts timestamps to its session time
# zone on the way to Arrow), and exactly one shuffle partition per bucket (adaptive execution
# would merge small ones, so that one task would rate several buckets in turn).
SESSION_CONFIG = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.coalescePartitions.enabled": "false",
}
# A session is already there to be had: spark-submit started this process (its JVM is the
# driver, the master chosen), it runs on Databricks, or SPARK_REMOTE names a Spark Connect server.
GIVEN_SESSION = ("PYSPARK_GATEWAY_PORT", "DATABRICKS_RUNTIME_VERSION", "SPARK_REMOTE")
# Only on a master this process starts itself (local[N]): the workers are its children, and its
# output is the command's (no progress bars of Spark's own).
LOCAL_CONFIG = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    # the driver's log: errors only (Spark's default profile says five lines of itself)
    "spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile="
    + (Path(__file__).parent / "spark-log4j2.properties").as_uri(),
}


def session(master: str | None = None, remote: str | None = None) -> SparkSession:
    """The session a run uses: Spark Connect at `remote` (sc://..., Databricks serverless), the
    given master, the one spark-submit made, or local[*]."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as missing:
        raise UsageError(
            "--engine spark needs pyspark: pip install 'bulk-rating[spark]' (and Java 17)"
        ) from missing
    builder: Any = SparkSession.builder.appName("bulk-rating")
    if remote:
        builder = builder.remote(remote)
    elif master or not any(name in os.environ for name in GIVEN_SESSION):
        chosen = master or "local[*]"
        builder = builder.master(chosen)
        if chosen.startswith("local"):
            # workers are this machine's: they run this interpreter, on the loopback address
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            for key, value in LOCAL_CONFIG.items():
                builder = builder.config(key, value)
    try:
        spark: SparkSession = builder.getOrCreate()
    except Exception as failed:  # no Java, a cluster out of reach: said, not a traceback
        raise UsageError(f"Spark did not start: {str(failed).splitlines()[0]}") from failed
    for key, value in SESSION_CONFIG.items():
        _try_to_set(spark, key, value)
    with contextlib.suppress(Exception):  # Spark Connect has no SparkContext
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _try_to_set(spark: SparkSession, key: str, value: str) -> None:
    """A setting a managed cluster may refuse (Databricks serverless allows few): without it the
    result is the same (timestamps reach the workers as instants whatever the session's zone;
    merged buckets are rated one after another in one task), only the parallelism may differ."""
    with contextlib.suppress(Exception):
        spark.conf.set(key, value)


class SparkEngine:
    """Step 2 on Spark (buckets.Engine): a session started once, then every bucket rated."""

    def __init__(self, master: str | None = None, remote: str | None = None) -> None:
        self.master, self.remote = master, remote
        self.spark: SparkSession | None = None

    def start(self) -> None:
        self.spark = session(self.master, self.remote)

    def rate(self, folder: str, table: load.UsageTable, count: int) -> pa.Table:
        """Every bucket of the run planned in `folder` rated; one manifest row each."""
        from pyspark.sql import functions as F

        spark = self.spark or session(self.master, self.remote)
        _try_to_set(spark, "spark.sql.shuffle.partitions", str(count))
        rows = spark.read.parquet(*table.files)
        # columns by position (`pricing.region` is a name, not a field of `pricing`), named
        # back in the worker
        names = rows.columns
        columns = [
            F.col(f"`{name.replace('`', '``')}`").alias(f"_c{i}") for i, name in enumerate(names)
        ]
        columns.append(F.col("_metadata.file_path").alias(buckets.FILE_COLUMN))
        if not table.staged:
            columns.append((F.col("_metadata.row_index") + 1).alias(buckets.ROW_COLUMN))
        contract = F.col(f"_c{names.index('contract_id')}")
        bucketed = rows.select(*columns).withColumn(
            "_bulk_bucket", F.pmod(F.xxhash64(contract), F.lit(count))
        )

        def rate(key: tuple[Any, ...], group: pa.Table) -> pa.Table:
            given = group.drop(["_bulk_bucket"])
            given = given.rename_columns(names + given.column_names[len(names) :])
            return buckets.rate_bucket(folder, int(key[0].as_py()), given)

        answered: pa.Table = (
            bucketed.groupBy("_bulk_bucket")
            .applyInArrow(rate, schema=_ddl(buckets.MANIFEST))
            .toArrow()
        )
        return answered


def _ddl(schema: pa.Schema) -> str:
    names = {
        pa.int64(): "long",
        pa.string(): "string",
        pa.bool_(): "boolean",
        pa.float64(): "double",
    }
    return ", ".join(f"{field.name} {names[field.type]}" for field in schema)
