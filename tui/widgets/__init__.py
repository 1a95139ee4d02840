"""Widgets of the dashboard: each owns its state and is told what to show by its screen."""
