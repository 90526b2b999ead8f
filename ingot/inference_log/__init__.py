"""The inference log: one record per predicted row (with the variant and version that served it)
and the ground-truth labels that arrive later, joined to the row they label.

The gateway writes it, the rollout controller and the drift monitor read it. Its database is
`--log-url` / `$INGOT_LOG_URL`, by default the registry's (one SQLite file locally, one
PostgreSQL in a cluster). `schema` is the contract every reader and writer shares.
"""
