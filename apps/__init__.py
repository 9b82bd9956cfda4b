"""The apps: the command line, the demo, the report web page and the widget CLI. Only they
load the one Definitions (pipelines/definitions.py) and start syncs from outside Dagster."""
