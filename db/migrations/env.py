"""Alembic environment: the URL comes from the caller (db.migrate) or DATABASE_URL."""

from alembic import context
from sqlalchemy import pool

from config import settings
from db.models import Base
from db.session import migration_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or settings().database_url


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = migration_engine(url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


del pool
if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
