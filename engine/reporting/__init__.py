"""Prepared reporting tables (reporting.*) built from the synced stripe.* tables: the tables
declared as data, their SQL, and the build. No Dagster: the assets under assets/reporting
wrap the build, and the widgets read the tables by the names declared here."""

from engine.reporting.build import BuildResult, build_reporting_tables, ensure_reporting_schema
from engine.reporting.tables import REPORTING_TABLES, REPORTING_TABLES_BY_NAME, ReportingTable

__all__ = [
    "REPORTING_TABLES",
    "REPORTING_TABLES_BY_NAME",
    "BuildResult",
    "ReportingTable",
    "build_reporting_tables",
    "ensure_reporting_schema",
]
