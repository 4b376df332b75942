from app.core.areas import Area
from app.sessions import service, sweeper
from app.sessions.routes import blp

AREA = Area(
    name="sessions",
    blueprints=(blp,),
    events={
        "session.created": "A session was opened",
        "session.idle": "A session had no activity for [agent] idle_after_secs",
        "session.terminated": "A session ended (by a client, a timeout or the agent)",
        "message.received": "A session received a user message",
        "message.sent": "The agent answered in a session",
    },
    status=service.status_counts,
    background=(sweeper.start,),
)
