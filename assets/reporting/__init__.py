"""Prepared reporting tables (reporting.*) built from the synced stripe.* tables."""

from assets.reporting.assets import reporting_assets, reporting_tables
from assets.reporting.build import BuildResult, build_reporting_tables, ensure_reporting_schema
from assets.reporting.tables import REPORTING_TABLES, REPORTING_TABLES_BY_NAME, ReportingTable
from engine.currencies import currency_exponent

__all__ = [
    "REPORTING_TABLES",
    "REPORTING_TABLES_BY_NAME",
    "BuildResult",
    "ReportingTable",
    "build_reporting_tables",
    "currency_exponent",
    "ensure_reporting_schema",
    "reporting_assets",
    "reporting_tables",
]
