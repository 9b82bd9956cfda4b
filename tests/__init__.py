"""The test suite (a package, so helpers such as tests.sync_helpers import)."""
