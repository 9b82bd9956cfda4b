#!/bin/sh
# Every container of the image starts here: write $DAGSTER_HOME/dagster.yaml for the settings
# (PostgreSQL when STRIPE_REPORTS_DAGSTER_STORAGE_URL is set; a dagster.yaml mounted by the Helm
# chart is left as it is), then run the command (code server, webserver, daemon or a run).
set -e
python -m pipelines.instance >/dev/null
exec "$@"
