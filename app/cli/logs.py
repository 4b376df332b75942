import json
import time

import click
import requests
from flask import current_app

from app.core.logging import LEVELS

group = click.Group("logs", help="Read the service's logs.")


@group.command("tail")
@click.option("--url", default=None, help="Base URL of a running Lockgate (default from [gateway]).")
@click.option("--token", envvar="LOCKGATE_TOKEN", required=True, help="A read token (or LOCKGATE_TOKEN).")
@click.option("--level", default="info", type=click.Choice(list(LEVELS)))
@click.option("--module", default=None)
def tail(url, token, level, module):
    """Follow the live log stream in the terminal; reconnects and resumes on errors."""
    settings = current_app.extensions["lockgate"].settings
    base = url or f"http://{settings.get('gateway.host')}:{settings.get('gateway.port')}"
    params = {"level": level, **({"module": module} if module else {})}
    last_id = None
    while True:
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        try:
            with requests.get(f"{base}/api/v1/logs/stream", params=params, headers=headers,
                              stream=True, timeout=(5, 60)) as response:
                if response.status_code != 200:
                    raise click.ClickException(f"server answered {response.status_code}: {response.text[:200]}")
                last_id = _print_events(response, last_id)
        except requests.RequestException as exc:
            click.echo(f"-- connection lost ({exc.__class__.__name__}); reconnecting", err=True)
            time.sleep(1)


def _print_events(response, last_id):
    event_id, data = None, []
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            entry = json.loads("\n".join(data))
            click.echo(f"{entry['timestamp']} {entry['level'].upper():<5} {entry['module']}: {entry['message']}")
            last_id, event_id, data = event_id or last_id, None, []
    return last_id
