from app.core.areas import Area
from app.review import cli, service, workflow
from app.review.routes import blp

AREA = Area(
    name="review",
    blueprints=(blp,),
    events={
        "review.submitted": "A tool was submitted for review (source code or schema)",
        "review.analyzed": "A tool's automated security analysis completed, with its risk score",
        "review.queued": "A reviewed tool waits for a person's decision, with its priority and reviewer",
        "review.decided": "A review was decided: approved (by a person or automatically), rejected or sent back",
        "tool.signed": "An approved tool was signed; its package can be downloaded",
    },
    status=service.status_counts,
    jobs=workflow.KINDS,
    cli=(cli.group, cli.signing_group, cli.tools_group),
)
