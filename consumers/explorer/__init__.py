"""The story explorer and lookup API: ``newsdedup serve`` (read-only, over the store)."""
