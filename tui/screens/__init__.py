"""Screens of the dashboard, one module each; d/c/f/s switch between the four main ones."""
