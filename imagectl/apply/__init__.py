"""Applying a plan: scheduler, per-image protocol, engine."""
