"""Supervised units: unit_state, what each long-running unit is doing and where."""

from peewee import CharField, DateTimeField, IntegerField, TextField

from migrations import frozen_model


def upgrade(db):
    unit_state = frozen_model(db, "unit_state", {
        "id": CharField(primary_key=True, max_length=400),
        "name": CharField(max_length=200, index=True),
        "owner": CharField(max_length=200),
        "state": CharField(max_length=16),
        "since": DateTimeField(),
        "last_error": TextField(null=True),
        "restarts": IntegerField(default=0),
    })
    db.create_tables([unit_state])
