"""What privacy work (apps/consent: erasure, export, retention) does to events."""
