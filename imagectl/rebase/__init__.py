"""Rebase: republish an image on a new base without rebuilding it (safety and publishing)."""
