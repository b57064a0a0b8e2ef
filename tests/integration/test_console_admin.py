"""Console users managed over the API by an admin (real console process and broker, no
gateway needed): who may, CSRF, a disabled user's session ending at once, and the
headers that keep the pages out of frames and caches."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import add_user, login, running_console, site_yaml


def test_admin_adds_changes_and_disables_users(tmp_path: Path, mosquitto: Mosquitto) -> None:
    site = site_yaml(tmp_path, "admin-park", mosquitto)
    db = tmp_path / "console.sqlite"
    add_user(db, "root", "admin")
    add_user(db, "wang", "operator")
    with running_console(site, db) as base:
        root, wang = login(base, "root"), login(base, "wang")
        new = {"name": "li", "role": "viewer", "password": "li's long password"}
        # Only an admin adds users, and with the session's CSRF token.
        assert wang.post("/api/users", json=new).status_code == 403
        assert root.post("/api/users", json=new, headers={"X-CSRF-Token": "x"}).status_code == 403
        assert root.post("/api/users", json={**new, "role": "god"}).status_code == 422
        assert root.post("/api/users", json={**new, "password": "short"}).status_code == 422
        r = root.post("/api/users", json=new)
        assert r.status_code == 201 and r.json() == {"name": "li", "role": "viewer"}
        assert root.post("/api/users", json=new).status_code == 422  # exists already
        li = login(base, "li", "li's long password")
        assert li.get("/api/me").json()["role"] == "viewer"
        # Promote, then disable: li's session ends at once.
        r = root.patch("/api/users/li", json={"role": "operator"})
        assert r.status_code == 200 and r.json()["role"] == "operator"
        assert li.get("/api/me").json()["role"] == "operator"
        assert root.patch("/api/users/li", json={"disabled": True}).status_code == 200
        assert li.get("/api/me").status_code == 401
        assert root.patch("/api/users/nobody", json={"role": "viewer"}).status_code == 404
        assert root.patch("/api/users/root", json={"disabled": True}).status_code == 422
        audit = [a["action"] for a in root.get("/api/audit").json()]
        assert audit.count("user_change") == 2 and "user_add" in audit
        # Pages: not framed, not cached; the login page for anyone else.
        page = root.get("/users")
        assert page.status_code == 200 and "li" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        assert wang.get("/users").status_code == 403
        assert httpx.get(base + "/users").status_code == 303
        # The OpenAPI description lists the API.
        paths = httpx.get(base + "/openapi.json").json()["paths"]
        assert {"/api/actions", "/api/alarms", "/api/users", "/api/tokens"} <= set(paths)
