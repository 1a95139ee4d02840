"""Alembic environment and revisions: the only way the m2i schema changes."""
