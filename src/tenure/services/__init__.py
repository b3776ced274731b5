"""Use cases: load from the store, call the pure core, save. No SQL, no Temporal."""
