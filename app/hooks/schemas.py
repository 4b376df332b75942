import marshmallow as ma

from app.core.schema import Boolean, JsonList, PatchSchema, UtcDateTime
from app.hooks import catalogue, signing, targets
from app.hooks.models import ATTEMPT_OUTCOMES, STATUSES

# What targets.parse checks first; the rest (a host, no credentials, no spaces) is said in the description.
URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://"
# whsec_ and the base64 of a 24 to 64 byte key (8 to 21 groups of 4 characters, then a padded tail).
_B64 = "[A-Za-z0-9+/]"
SECRET_PATTERN = (f"^whsec_(?:(?:{_B64}{{4}}){{8,20}}(?:{_B64}{{2}}(?:==)?|{_B64}{{3}}=?)?"
                  f"|(?:{_B64}{{4}}){{21}}(?:{_B64}{{2}}(?:==)?)?)$")


def _validate_url(url: str) -> None:
    try:
        targets.parse(url)
    except ValueError as exc:
        raise ma.ValidationError(f"URL {exc}") from None


def _validate_events(names: list) -> None:
    if not names:
        raise ma.ValidationError("subscribe to at least one event, or \"*\" for all")
    unknown = catalogue.unknown(names)
    if unknown:
        raise ma.ValidationError(
            f"unknown events: {', '.join(unknown)}; known: {', '.join(catalogue.EVENTS)} or \"*\"")


def _validate_secret(secret: str) -> None:
    try:
        signing.decode_secret(secret)
    except ValueError as exc:
        raise ma.ValidationError(f"secret {exc}") from None


def _url_field(**kwargs):
    return ma.fields.String(validate=[ma.validate.Length(max=targets.MAX_URL_LENGTH), _validate_url], metadata={
        "example": "https://example.com/webhook", "pattern": URL_PATTERN,
        "description": "http:// or https:// URL naming a host, without credentials or spaces; "
                       "private and loopback addresses only with hooks.allow_private_targets"}, **kwargs)


def _events_field(**kwargs):
    return ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(max=100),
                         metadata={"choices_from": lambda settings: [catalogue.WILDCARD, *catalogue.EVENTS]}),
        validate=[ma.validate.Length(min=1, max=100), _validate_events],
        metadata={"example": ["session.created", "message.received"],
                  "description": "Event names (docs/events.md), or \"*\" for all"}, **kwargs)


def _secret_field(**kwargs):
    return ma.fields.String(validate=[ma.validate.Regexp(SECRET_PATTERN, error="secret must be whsec_ followed by "
                                                         "the base64 of a 24 to 64 byte key"), _validate_secret],
                            metadata={"description": "Standard Webhooks secret: whsec_ + base64 of a 24 to 64 byte "
                                                     "key"}, **kwargs)


class HookCreateSchema(ma.Schema):
    url = _url_field(required=True)
    events = _events_field(required=True)
    secret = _secret_field(load_default=None)


class HookPatchSchema(PatchSchema):
    class Meta:
        openapi = {"minProperties": 1, "not": {
            "description": "a secret and rotate_secret: true together",
            "required": ["secret", "rotate_secret"], "properties": {"rotate_secret": {"enum": [True]}}}}

    url = _url_field()
    events = _events_field()
    active = Boolean()
    secret = _secret_field()
    rotate_secret = Boolean(metadata={"description": "Generate a new secret, returned once"})

    @ma.validates_schema
    def one_secret_change(self, data, **kwargs):
        if "secret" in data and data.get("rotate_secret"):
            raise ma.ValidationError("give either secret or rotate_secret, not both", "rotate_secret")


class HookSchema(ma.Schema):
    id = ma.fields.String(metadata={"example": "hook_3f9c2a7d1e4b8a60"})
    url = ma.fields.String()
    events = JsonList(ma.fields.String())
    active = ma.fields.Boolean()
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    disabled_reason = ma.fields.String(allow_none=True)
    consecutive_failures = ma.fields.Integer()


class HookWithSecretSchema(HookSchema):
    secret = ma.fields.String(metadata={"description": "Only when generated: at creation without a secret, "
                                                       "or on rotation. Never shown again."})


class HooksSchema(ma.Schema):
    hooks = ma.fields.List(ma.fields.Nested(HookSchema))


class AttemptSchema(ma.Schema):
    number = ma.fields.Integer()
    started_at = UtcDateTime()
    status_code = ma.fields.Integer(allow_none=True)
    duration_ms = ma.fields.Integer()
    error = ma.fields.String(allow_none=True)
    response = ma.fields.String(allow_none=True)
    outcome = ma.fields.String(metadata={"enum": list(ATTEMPT_OUTCOMES)})
    next_retry_at = UtcDateTime(allow_none=True)


class DeliverySchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "The webhook-id header, the same on every attempt"})
    event = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(STATUSES)})
    created_at = UtcDateTime()
    next_attempt_at = UtcDateTime(allow_none=True, metadata={"description": "While pending"})
    completed_at = UtcDateTime(allow_none=True)
    attempt_count = ma.fields.Integer()
    attempts = ma.fields.List(ma.fields.Nested(AttemptSchema))


class DeliveriesQuerySchema(ma.Schema):
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATUSES))
    event = ma.fields.String(load_default=None, validate=ma.validate.Length(max=100))
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=500))


class DeliveriesSchema(ma.Schema):
    deliveries = ma.fields.List(ma.fields.Nested(DeliverySchema))
