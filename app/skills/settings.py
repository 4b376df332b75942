"""Skills: the directory of the operator's own skills."""

from app.core.fields import Field

SECTIONS = {
    "skills": {
        "dir": Field("str", "", help="Directory of skill directories (SKILL.md or SKILL.toml); "
                                     "empty: skills in the data directory."),
    },
    "rate_limits": {
        "skills_read": Field("limit", "50/s", help="Limit of listing skills."),
    },
}
