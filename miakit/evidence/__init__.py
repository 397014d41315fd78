"""Metrics, claims and their verdicts, sample quality, cost, per-image score export."""
