"""Integrations with the tools people already use (each behind its own optional extra)."""
