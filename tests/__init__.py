"""The test suite (a package, so helpers such as tests.postgres_server import)."""
