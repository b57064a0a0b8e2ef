"""Reloading a gateway's config from the console (real gateway, console and broker as
processes): admin only, with CSRF; the console signs the ``reload`` command for the
admin, and shows the outcome the gateway publishes on ``events`` (``config.applied`` /
``config.rejected``), over the API and on the gateways page."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.servers import Mosquitto
from tests.integration.console_support import (
    CONSOLE_KEY,
    add_user,
    login,
    running_console,
    running_gateway,
    wait,
)
from tests.sitebuilder import leak_monitor_site, write_site

SITE = "reload-console"
ALLOW = ["ack", "shelve", "unshelve", "reset", "out_of_service", "in_service", "list", "reload"]


def test_an_admin_reloads_a_gateway_and_sees_the_outcome(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    console_user = {"key": CONSOLE_KEY, "on_behalf": True, "allow": ALLOW}
    doc = leak_monitor_site(SITE, tmp_path / SITE, mosquitto, console=console_user)
    site = write_site(tmp_path / SITE, doc)
    db = tmp_path / "console.sqlite"
    add_user(db, "root", "admin")
    add_user(db, "wang", "operator")
    add_user(db, "li", "viewer")
    with running_gateway(site), running_console(site, db) as base:
        root, wang, li = login(base, "root"), login(base, "wang"), login(base, "li")

        def online() -> bool:
            gws = root.get("/api/gateways").json()
            return any(g["site"] == SITE and g["status"] == "online" for g in gws)

        wait(online, 60, "the gateway online in the console")
        body = {"site": SITE}
        # Admin only, with the session's CSRF token; an unknown site is a 404.
        assert wang.post("/api/reload", json=body).status_code == 403
        assert li.post("/api/reload", json=body).status_code == 403
        assert root.post("/api/reload", json=body, headers={"X-CSRF-Token": "x"}).status_code == 403
        assert root.post("/api/reload", json={"site": "nowhere"}).status_code == 404
        assert root.post("/api/reload", json={"site": SITE, "x": 1}).status_code == 422

        r = root.post("/api/reload", json=body)
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["reply"]["ok"] and got["reply"]["accepted"], got
        outcome = got["outcome"]
        assert outcome["kind"] == "config.applied" and outcome["summary"] == "no change", got
        assert len(outcome["hash"]) == 64

        # A broken site file: the gateway keeps its config and says why; so does the console.
        good = site.read_text()
        site.write_text(good + "no_such_section: 1\n")
        r = root.post("/api/reload", json=body)
        assert r.status_code == 200, r.text
        rejected = r.json()["outcome"]
        assert rejected["kind"] == "config.rejected", rejected
        assert "no_such_section" in rejected["error"] and rejected["hash"] == outcome["hash"]

        # The page: only an admin sees the button; the form needs CSRF and shows the outcome.
        site.write_text(good)
        page = root.get("/gateways").text
        assert 'action="/gateways/reload"' in page and "no_such_section" in page
        assert 'action="/gateways/reload"' not in wang.get("/gateways").text
        form = {"site": SITE, "csrf": "wrong"}
        assert root.post("/gateways/reload", data=form).status_code == 403
        as_wang = {**form, "csrf": wang.headers["X-CSRF-Token"]}
        assert wang.post("/gateways/reload", data=as_wang).status_code == 403
        form["csrf"] = root.headers["X-CSRF-Token"]
        r = root.post("/gateways/reload", data=form)
        assert r.status_code == 303
        shown = root.get(r.headers["location"]).text
        assert f"reload {SITE}: applied" in shown and "no change" in shown, shown
        # Audited as root's, newest first: applied, rejected (with why), applied.
        audit = [a for a in root.get("/api/audit").json() if a["action"] == "reload"]
        assert [a["ok"] for a in audit] == [True, False, True], audit
        assert "no_such_section" in audit[1]["detail"]
        assert all(a["user"] == "root" and a["site"] == SITE for a in audit), audit
