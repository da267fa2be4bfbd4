"""What profile lifecycle hooks (apps/identity/hooks.py) do to consent records."""
