"""The request pipeline in process: envelopes for failures that HTTP clients cannot provoke."""

import re


def test_unexpected_exception_is_a_500_envelope_without_traceback(app, auth, caplog):
    @app.route("/api/v1/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = app.test_client().get("/api/v1/boom", headers={**auth("read"), "X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert "req-42" in response.json["error"]["message"]
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert response.headers["X-Request-ID"] == "req-42"
    assert any("req-42" in record.getMessage() and record.exc_info for record in caplog.records)


def test_openapi_documents_every_route(app):
    spec = app.test_client().get("/api/v1/openapi.json").json
    documented = {(path, method.upper()) for path, item in spec["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint.startswith("api-docs."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, (path, method)
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["paths"]["/api/v1/status/health"]["get"]["security"] == []
