"""What personalization plugs into the layers below (filled in step by step)."""
