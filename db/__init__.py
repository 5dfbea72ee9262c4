"""Storage: contents and their classifications (SQLAlchemy 2, PostgreSQL or SQLite)."""
