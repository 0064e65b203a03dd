"""prunelab."""
