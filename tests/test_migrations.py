from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

import shared
from shared.models import Base, include_object


def test_migrations_have_a_single_head():
    config = Config()
    config.set_main_option("script_location", str(Path(shared.__file__).parent / "migrations"))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def test_migrated_schema_matches_the_models(settings):
    """The settings fixture migrated a fresh database; the ORM models must need no further migration."""
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": include_object})
        diff = compare_metadata(context, Base.metadata)
        tables = set(inspect(conn).get_table_names())
    engine.dispose()
    assert diff == []
    assert {"jobs", "documents", "topics", "job_arrays"} <= tables
    search = "document_search" in tables if settings.sqlalchemy_url.startswith("sqlite") else any(
        index["name"] == "ix_documents_search" for index in inspect_indexes(settings, "documents"))
    assert search, "the full-text search table or index is missing"


def inspect_indexes(settings, table: str) -> list[dict]:
    engine = create_engine(settings.sqlalchemy_url)
    with engine.connect() as conn:
        indexes = inspect(conn).get_indexes(table)
    engine.dispose()
    return indexes
