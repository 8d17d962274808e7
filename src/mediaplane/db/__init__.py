"""PostgreSQL access: engine and sessions, the embedded server, the declarative base, migrations."""

from mediaplane.db.base import Base
from mediaplane.db.engine import Database, sqlalchemy_url
from mediaplane.db.migrate import upgrade_to_head

__all__ = ["Base", "Database", "sqlalchemy_url", "upgrade_to_head"]
