"""Storage: migration revisions, applied in order by alembic."""
