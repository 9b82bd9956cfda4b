"""DuckLake: one warehouse that writers on many machines share.

`STRIPE_REPORTS_WAREHOUSE=ducklake:postgres:dbname=… host=… port=… user=…` keeps the
catalog in PostgreSQL and the data files under `STRIPE_REPORTS_LAKE_DATA_PATH`. There is no
lock file: writers build their transactions side by side and DuckLake orders the commits
(optimistic concurrency). Two commits that touch the same table logically conflict (one
deleted rows from a table the other inserted into, both replaced a macro): the loser's
transaction is re-run on the newer snapshot (`retrying.RetryingConnection`), in its turn
(`turns.CommitTurn`, a PostgreSQL advisory lock), so it cannot lose again. Readers read
inside one transaction, so a widget's queries all see one committed snapshot. One sync per
client at a time is a PostgreSQL advisory lock on the catalog database too
(`client_lock`), so both hold across machines.

The modules, by concern: `target` (the catalog setting, parsed and masked), `database` (one
process's DuckDB with the lake attached, extensions loaded by path: DuckDB never downloads
anything here), `turns`, `retrying`, `client_lock`, `maintenance` (the nightly pass, and
what makes a purge final), `client_copy` (widgets read a per-process copy of the client's
reporting rows: a catalog round trip per query made them ~15× slower than the file), and
`warehouse` (`LakeWarehouse`, the Warehouse interface on it).
"""
