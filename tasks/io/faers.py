"""FAERS drug x adverse-event report counts as shipped in the ``mddc`` package (public-domain data).

Each CSV is a contingency table: rows are adverse events (MedDRA preferred terms), columns are
drugs, the last row and column ('Other') aggregate everything else. Only the package's data
files are read (the package's own code needs matplotlib and a C++ helper; it is not imported).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import polars as pl

from tasks.errors import ConfigError, DataContractError

TABLES = ("statin49", "statin101", "betablocker500", "sedative1000")


def data_dir() -> Path:
    try:
        return Path(str(resources.files("MDDC.datasets").joinpath("data")))
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "FAERS count tables need the mddc package: pip install mddc==1.1.0"
        ) from exc


def table_digest(tables: tuple[str, ...] = TABLES) -> str:
    """sha256 over the CSV bytes: changes only when the shipped data changes."""
    digest = hashlib.sha256()
    for name in tables:
        digest.update((data_dir() / f"{name}.csv").read_bytes())
    return digest.hexdigest()


def read_counts(tables: tuple[str, ...] = TABLES, folder: Path | None = None) -> pl.DataFrame:
    """Long counts: table, drug (lower case), event, n.

    Args:
        tables: CSV stems to read.
        folder: where the CSVs are; default the mddc package's data folder.

    Raises:
        DataContractError: a cell is not a non-negative integer (names the table and cell).
    """
    frames = []
    for name in tables:
        path = (folder or data_dir()) / f"{name}.csv"
        wide = pl.read_csv(path, infer_schema_length=0)
        event_col = wide.columns[0]
        long = wide.rename({event_col: "event"}).unpivot(
            index="event", variable_name="drug", value_name="raw"
        )
        parsed = long.with_columns(pl.col("raw").cast(pl.Int64, strict=False).alias("n"))
        bad = parsed.filter(pl.col("n").is_null() | (pl.col("n") < 0))
        if bad.height:
            row = bad.row(0, named=True)
            raise DataContractError(
                f"FAERS count '{row['raw']}' is not a non-negative integer",
                record=f"{name}:{row['event']}",
                field=row["drug"],
            )
        frames.append(
            parsed.select(
                pl.lit(name).alias("table"),
                pl.when(pl.col("drug") == "Other")
                .then(pl.col("drug"))
                .otherwise(pl.col("drug").str.to_lowercase())
                .alias("drug"),
                "event",
                "n",
            )
        )
    return pl.concat(frames)
