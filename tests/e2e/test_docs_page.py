"""The docs page renders its operations in a real headless Chromium with no internet.

Swagger UI comes from the service itself; the browser is given a proxy that
goes nowhere, so any request beyond loopback (a CDN) would fail and leave the
page blank.
"""

from __future__ import annotations

import shutil
import subprocess

import requests

BROWSER = shutil.which("chromium")
NOWHERE = "http://127.0.0.1:9"  # loopback is never proxied; everything else goes here and fails


def rendered_dom(url: str, profile) -> str:
    assert BROWSER, "Debian's chromium is needed (apt-get install chromium; .ci/run installs it)"
    command = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
               f"--user-data-dir={profile}", f"--proxy-server={NOWHERE}", "--virtual-time-budget=20000",
               "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode(errors="replace")


def test_the_docs_page_lists_every_operation_offline(server, tmp_path):
    document = requests.get(f"{server.url}/api/v1/openapi.json", timeout=10).json()
    operation_ids = [operation["operationId"] for path in document["paths"].values()
                     for method, operation in path.items() if method != "parameters"]

    dom = rendered_dom(f"{server.url}/api/v1/docs", tmp_path / "profile")

    assert "opblock-summary" in dom, dom[-2000:]
    missing = [operation_id for operation_id in operation_ids if operation_id not in dom]
    assert not missing, f"operations not rendered: {missing}"


def test_the_swagger_ui_assets_are_served_without_a_token(server):
    page = requests.get(f"{server.url}/api/v1/docs", timeout=10)
    script = requests.get(f"{server.url}/api/v1/docs/assets/swagger-ui-bundle.js", timeout=10)
    missing = requests.get(f"{server.url}/api/v1/docs/assets/no-such-file.js", timeout=10)

    assert page.status_code == 200 and "/api/v1/docs/assets/swagger-ui-bundle.js" in page.text
    assert "https://" not in page.text.split("<body")[0]
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
