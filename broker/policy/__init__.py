"""Dataset access rules: load, compile, decide, explain."""
