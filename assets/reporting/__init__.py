"""The reporting tables as Dagster assets; the tables and their build are engine.reporting."""

from assets.reporting.assets import reporting_assets, reporting_tables

__all__ = ["reporting_assets", "reporting_tables"]
