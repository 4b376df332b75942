"""What the skills API shows."""

import marshmallow as ma


class SkillSchema(ma.Schema):
    name = ma.fields.String(required=True)
    source = ma.fields.String(metadata={"description": "builtin, plugin:<name> or local"})
    description = ma.fields.String()
    triggers = ma.fields.List(ma.fields.String(), metadata={
        "description": "Slash triggers (/review) that start a message, or phrases (\"review this\") it contains"})


class SkillsSchema(ma.Schema):
    skills = ma.fields.List(ma.fields.Nested(SkillSchema))
