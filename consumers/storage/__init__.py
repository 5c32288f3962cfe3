"""Storage: SQLAlchemy models, Alembic migrations, and the story store (the only SQL in the project)."""
