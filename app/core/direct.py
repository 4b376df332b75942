"""Direct routes: plain reads answered from the WSGI environ, without Flask's request and response objects.

For a probe or a status read, Flask's request context, routing, hooks and
response object cost more than the route's own work (docs/performance.md).
A route marked ``Blueprint.direct`` stays a Flask route: the OpenAPI document,
HEAD, and every request that is not the plain case go through Flask as usual.
The plain case, a GET of the route's exact path with no query string and no
body, is answered here, after the same admission as every request
(``app.core.pipeline``).

Whatever is not a plain answer is handed to Flask with the admission already
made, so nothing is counted twice: a refusal or an error in admission is
raised again by Flask's first hook and answered as any error is, and a handler
that raised is run again as the Flask view, where its error gets the usual
answer. That is why a direct handler must only read.
"""

from __future__ import annotations

from werkzeug.http import HTTP_STATUS_CODES

from app.core.db import release_connection
from app.core.pipeline import Admission, Pipeline, answer_headers, log_access

# The environ key under which a request handed to Flask carries (admission, error or None).
HANDED_OVER = "lockgate.admission"


class DirectRoute:
    __slots__ = ("endpoint", "blueprint", "handler")

    def __init__(self, endpoint: str, handler):
        self.endpoint = endpoint
        self.blueprint = endpoint.rpartition(".")[0] or None
        self.handler = handler


class DirectRoutes:
    """WSGI middleware in front of Flask (``app.wsgi_app``)."""

    def __init__(self, app, pipeline: Pipeline, flask_wsgi):
        self.app = app
        self.pipeline = pipeline
        self.flask_wsgi = flask_wsgi
        self._routes: dict[str, DirectRoute] | None = None

    def __call__(self, environ, start_response):
        route = self._plain_route(environ)
        if route is None:
            return self.flask_wsgi(environ, start_response)
        admission = Admission(environ)
        path = environ["PATH_INFO"]
        try:
            self.pipeline.admit(admission, environ, route.endpoint, route.blueprint, path)
        except Exception as exc:
            return self._hand_over(environ, start_response, admission, exc)
        try:
            body, status = route.handler(self.pipeline.state)
            data = self.app.json.body(body)
        except Exception:
            release_connection()
            return self._hand_over(environ, start_response, admission, None)
        release_connection()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                   *answer_headers(admission).items()]
        start_response(_status_line(status), headers)
        log_access("GET", path, status, admission)
        return [data]

    def _plain_route(self, environ) -> DirectRoute | None:
        if environ["REQUEST_METHOD"] != "GET" or environ.get("QUERY_STRING"):
            return None
        if environ.get("CONTENT_LENGTH", "0") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        if self._routes is None:
            self._routes = direct_routes(self.app)
        return self._routes.get(environ.get("PATH_INFO", ""))

    def _hand_over(self, environ, start_response, admission: Admission, error: Exception | None):
        environ[HANDED_OVER] = (admission, error)
        return self.flask_wsgi(environ, start_response)


def direct_routes(app) -> dict[str, DirectRoute]:
    """Path -> route, for the GET rules without arguments whose view was marked ``Blueprint.direct``."""
    routes = {}
    for rule in app.url_map.iter_rules():
        handler = getattr(app.view_functions.get(rule.endpoint), "_lockgate_direct", None)
        if handler is None or "GET" not in rule.methods or rule.arguments:
            continue
        route = DirectRoute(rule.endpoint, handler)
        if app.before_request_funcs.get(route.blueprint):
            # Its blueprint's own hooks would not run on the direct path.
            raise RuntimeError(f"{rule.endpoint} cannot be direct: blueprint {route.blueprint} has request hooks")
        routes[rule.rule] = route
    return routes


_status_lines: dict[int, str] = {}


def _status_line(status: int) -> str:
    # Worded as werkzeug words it, so both paths answer alike.
    line = _status_lines.get(status)
    if line is None:
        line = _status_lines[status] = f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}"
    return line
