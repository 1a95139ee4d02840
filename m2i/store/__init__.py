"""The run store: SQLModel tables, engine, claiming with leases, requeue, status.

Import order matters: ``models`` sets the SQLAlchemy naming convention before any table is
declared, so always import tables through this package.
"""

from m2i.store.engine import Store, open_store, resolve_url
from m2i.store.models import STAGES, Status

__all__ = ["STAGES", "Status", "Store", "open_store", "resolve_url"]
