"""Clients are partition keys of one asset graph; nothing is copied per client."""

from dagster import DynamicPartitionsDefinition

CLIENTS_PARTITION_NAME = "stripe_clients"

clients_partitions = DynamicPartitionsDefinition(name=CLIENTS_PARTITION_NAME)
