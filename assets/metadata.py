"""Dagster metadata the asset modules share."""

from __future__ import annotations

from dagster import TableColumn, TableSchema

from engine.streams import Column


def column_schema(columns: tuple[Column, ...]) -> TableSchema:
    """The columns as Dagster shows them on the asset page (`dagster/column_schema`)."""
    return TableSchema(
        columns=[TableColumn(c.name, c.type, description=c.description) for c in columns]
    )
