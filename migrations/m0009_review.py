"""Tool reviews, their analyses, one row per finding (statistics in SQL) and signatures with signed packages."""

from peewee import AutoField, BlobField, BooleanField, CharField, DateTimeField, IntegerField, TextField

from migrations import frozen_model


def upgrade(db):
    session = frozen_model(db, "review_session", {
        "id": CharField(primary_key=True, max_length=36),
        "kind": CharField(max_length=8),
        "tool_name": CharField(max_length=200),
        "tool_version": CharField(max_length=100),
        "language": CharField(max_length=16, null=True),
        "source": TextField(),
        "description": TextField(default=""),
        "author": CharField(max_length=200, default=""),
        "permissions": TextField(default="[]"),
        "tool": TextField(null=True),
        "submitted_by": CharField(max_length=200, default=""),
        "requested_priority": CharField(max_length=16, default="normal"),
        "status": CharField(max_length=24),
        "previous_id": CharField(max_length=36, null=True),
        "risk_score": IntegerField(null=True),
        "analysis_id": CharField(max_length=36, null=True),
        "priority": CharField(max_length=16, null=True),
        "assigned_to": CharField(max_length=200, null=True),
        "escalated_at": DateTimeField(null=True),
        "auto_approved": BooleanField(null=True),
        "decision": CharField(max_length=24, null=True),
        "comments": TextField(null=True),
        "conditions": TextField(default="[]"),
        "reviewer_id": CharField(max_length=200, null=True),
        "decided_at": DateTimeField(null=True),
        "signing_error": TextField(null=True),
        "created_at": DateTimeField(),
        "updated_at": DateTimeField(),
        "analysis_started_at": DateTimeField(null=True),
    }, indexes=((("status", "created_at"), False), (("author", "created_at"), False),
                (("tool_name", "created_at"), False)))
    analysis = frozen_model(db, "review_analysis", {
        "id": CharField(primary_key=True, max_length=36),
        "review_id": CharField(max_length=36, unique=True),
        "language": CharField(max_length=16, null=True),
        "risk_score": IntegerField(),
        "findings": TextField(),
        "recommendations": TextField(),
        "rag_insights": TextField(),
        "stats": TextField(),
        "error": TextField(null=True),
        "started_at": DateTimeField(),
        "completed_at": DateTimeField(),
    })
    finding = frozen_model(db, "review_finding", {
        "id": AutoField(),
        "analysis_id": CharField(max_length=36, index=True),
        "severity": CharField(max_length=16),
        "category": CharField(max_length=64),
        "cwe": CharField(max_length=16, null=True),
    })
    signature = frozen_model(db, "review_signature", {
        "review_id": CharField(primary_key=True, max_length=36),
        "algorithm": CharField(max_length=32),
        "key_id": CharField(max_length=64),
        "signature": TextField(),
        "certificate_chain": TextField(),
        "manifest": TextField(),
        "schemapin": TextField(null=True),
        "package": BlobField(),
        "package_name": CharField(max_length=300),
        "signed_at": DateTimeField(),
    })
    db.create_tables([session, analysis, finding, signature])
