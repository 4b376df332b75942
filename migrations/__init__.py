"""Numbered, forward-only schema migrations.

Each module ``mNNNN_name.py`` has ``upgrade(db)``. Tables are described here
as they were when the migration was written, not through the application's
models, so a later change to a model never changes what an old migration does.
"""

from peewee import Model


def frozen_model(db, table_name: str, fields: dict, indexes: tuple = ()):
    meta = type("Meta", (), {"database": db, "table_name": table_name, "indexes": indexes})
    return type(f"Frozen_{table_name}", (Model,), {"Meta": meta, **fields})
