"""Declarative base with a naming convention, so Alembic names constraints deterministically."""

from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def import_all_models() -> None:
    """Import every module that declares tables, so `Base.metadata` is complete (Alembic)."""
    # Imported for their side effect: each module adds its tables to Base.metadata.
    import mediaplane.consent.models
    import mediaplane.faces.models
    import mediaplane.images_api.models
    import mediaplane.jobs.models
    import mediaplane.projects.models
    import mediaplane.ratelimit.models
    import mediaplane.uploads.models  # noqa: F401
