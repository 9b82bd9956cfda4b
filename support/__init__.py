"""What the tests and the benchmarks both start or drive: a throwaway PostgreSQL server, and a
batch run executed as the code server executes it. Not part of the product."""
