-- Runs once, when the compose file's PostgreSQL starts on an empty volume: the connection
-- store's own database beside Dagster's (`dagster`, created by POSTGRES_DB).
CREATE DATABASE stripe_reports OWNER dagster;
