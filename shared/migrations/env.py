"""Alembic environment: migrations run against the URL that ``shared.db.migrate`` passes in."""

from alembic import context
from sqlalchemy import create_engine

from shared.models import Base, include_object

config = context.config
url = config.get_main_option("sqlalchemy.url")
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        render_as_batch=url.startswith("sqlite"),  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
