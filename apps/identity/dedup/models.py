"""Models of probabilistic deduplication."""
