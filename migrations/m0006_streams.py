"""Open event streams counted across workers: one row per open stream, and the tally of streams dropped."""

from peewee import BigIntegerField, CharField, DateTimeField

from migrations import frozen_model


def upgrade(db):
    stream_slot = frozen_model(db, "stream_slot", {
        "id": CharField(primary_key=True, max_length=32),
        "token_id": CharField(max_length=64, index=True),
        "owner": CharField(max_length=200),
        "opened_at": DateTimeField(),
        "expires_at": DateTimeField(index=True),
    })
    stream_tally = frozen_model(db, "stream_tally", {
        "name": CharField(primary_key=True, max_length=64),
        "count": BigIntegerField(),
    })
    db.create_tables([stream_slot, stream_tally])
