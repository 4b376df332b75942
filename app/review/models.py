"""Tool reviews, their analyses (with one row per finding, for statistics in SQL) and their signatures."""

from peewee import AutoField, BlobField, BooleanField, CharField, DateTimeField, IntegerField, TextField

from app.core.db import BaseModel

# The workflow (docs/review.md): a review moves forward only.
SUBMITTED, ANALYZING, PENDING_REVIEW = "submitted", "analyzing", "pending_review"
APPROVED, SIGNED, REJECTED, CHANGES_REQUESTED = "approved_for_signing", "signed", "rejected", "changes_requested"
STATES = (SUBMITTED, ANALYZING, PENDING_REVIEW, APPROVED, SIGNED, REJECTED, CHANGES_REQUESTED)
OPEN = (SUBMITTED, ANALYZING, PENDING_REVIEW)
CLOSED = (REJECTED, CHANGES_REQUESTED)
SOURCE, SCHEMA = "source", "schema"


class ReviewSession(BaseModel):
    id = CharField(primary_key=True, max_length=36)
    kind = CharField(max_length=8)  # source | schema
    tool_name = CharField(max_length=200)
    tool_version = CharField(max_length=100)
    language = CharField(max_length=16, null=True)
    source = TextField()  # the source code, or the tool schema as JSON
    description = TextField(default="")
    author = CharField(max_length=200, default="")
    permissions = TextField(default="[]")
    tool = TextField(null=True)  # the SDK's tool object as submitted
    submitted_by = CharField(max_length=200, default="")
    requested_priority = CharField(max_length=16, default="normal")
    status = CharField(max_length=24)
    previous_id = CharField(max_length=36, null=True)  # the review whose changes this one answers
    risk_score = IntegerField(null=True)
    analysis_id = CharField(max_length=36, null=True)
    priority = CharField(max_length=16, null=True)  # in the queue: high | normal
    assigned_to = CharField(max_length=200, null=True)
    escalated_at = DateTimeField(null=True)  # entered the human queue
    auto_approved = BooleanField(null=True)
    decision = CharField(max_length=24, null=True)
    comments = TextField(null=True)
    conditions = TextField(default="[]")
    reviewer_id = CharField(max_length=200, null=True)
    decided_at = DateTimeField(null=True)
    signing_error = TextField(null=True)
    created_at = DateTimeField()
    updated_at = DateTimeField()
    analysis_started_at = DateTimeField(null=True)

    class Meta:
        table_name = "review_session"
        indexes = ((("status", "created_at"), False), (("author", "created_at"), False),
                   (("tool_name", "created_at"), False))


class ReviewAnalysis(BaseModel):
    id = CharField(primary_key=True, max_length=36)
    review_id = CharField(max_length=36, unique=True)
    language = CharField(max_length=16, null=True)
    risk_score = IntegerField()
    findings = TextField()
    recommendations = TextField()
    rag_insights = TextField()
    stats = TextField()
    error = TextField(null=True)  # why the analysis could not complete (then a person decides)
    started_at = DateTimeField()
    completed_at = DateTimeField()

    class Meta:
        table_name = "review_analysis"


class ReviewFinding(BaseModel):
    """One finding's severity and category, so that statistics are counted by the database."""

    id = AutoField()
    analysis_id = CharField(max_length=36, index=True)
    severity = CharField(max_length=16)
    category = CharField(max_length=64)
    cwe = CharField(max_length=16, null=True)

    class Meta:
        table_name = "review_finding"


class ReviewSignature(BaseModel):
    review_id = CharField(primary_key=True, max_length=36)
    algorithm = CharField(max_length=32)
    key_id = CharField(max_length=64)
    signature = TextField()  # base64 of the manifest's signature
    certificate_chain = TextField()  # JSON list of PEM: signing certificate first, root last
    manifest = TextField()
    schemapin = TextField(null=True)  # JSON: the SchemaPin signature, when [review] signing = "schemapin"
    package = BlobField()
    package_name = CharField(max_length=300)
    signed_at = DateTimeField()

    class Meta:
        table_name = "review_signature"
