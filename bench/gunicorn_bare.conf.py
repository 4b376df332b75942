"""gunicorn settings for the bare-Flask baseline: the project's settings without its hooks.

The project's gunicorn.conf.py is evaluated (with the same LOCKGATE_CONFIG and
environment) and every server setting is copied; the Lockgate worker hooks
(on_starting, post_worker_init, worker_exit) are left out because the bare app
has no Lockgate state; pre_request/post_request, if defined, are kept. ``--bind``
and ``--workers`` on the command line override as usual.
"""

import runpy
from pathlib import Path

_project = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))

bind = _project["bind"]
worker_class = _project["worker_class"]
workers = _project["workers"]
worker_connections = _project["worker_connections"]
timeout = _project["timeout"]
graceful_timeout = _project["graceful_timeout"]
keepalive = _project["keepalive"]
accesslog = _project["accesslog"]
errorlog = _project["errorlog"]
loglevel = _project["loglevel"]
control_socket_disable = _project.get("control_socket_disable", True)
proc_name = "lockgate-bench-bare"

# Request hooks change how a worker schedules its connections (not what the
# application does), so the baseline gets them too when the project has them.
if "pre_request" in _project:
    pre_request = _project["pre_request"]
if "post_request" in _project:
    post_request = _project["post_request"]
