"""Transport, headers and files (issue 8, part 3-4): compression, long-cached versioned static files,
no-store on authenticated responses, a trusted-proxy setting with Secure cookies and HSTS, private
file modes from creation, a favicon, and a stock-machine install."""
from __future__ import annotations

import gzip
import os
import re
import stat
from pathlib import Path

import pytest

from app import _instance_secret, _private_dir, create_app
from models import db

ROOT = Path(__file__).resolve().parent.parent


def test_text_responses_are_gzipped_and_the_first_load_shrinks(client, auth, org):
    """The page, its CSS and its scripts come gzipped; the first load is well under half its size."""
    auth.login("bithu1")
    page = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in page.headers.get("Vary", "")
    html = gzip.decompress(page.data).decode()
    assert "<html" in html
    plain, packed = len(html.encode()), len(page.data)
    for src in re.findall(r'(?:src|href)="(/static/[^"]+)"', html):
        asset = client.get(src, headers={"Accept-Encoding": "gzip"})
        assert asset.status_code == 200, src
        if src.split("?")[0].endswith((".css", ".js")):
            assert asset.headers["Content-Encoding"] == "gzip", src
            plain += len(gzip.decompress(asset.data))
        else:
            plain += len(asset.data)
        packed += len(asset.data)
    print(f"first load: {plain} bytes plain, {packed} bytes gzipped")
    assert packed < plain / 2
    # A client that does not ask for gzip gets plain bytes.
    assert "Content-Encoding" not in client.get("/").headers


def test_static_urls_are_versioned_and_cached_for_long(client, auth, org):
    """Static links carry ?v=<hash> and are cached a year; the same file unversioned is not."""
    html = client.get("/login").get_data(as_text=True)
    src = re.search(r'src="(/static/js/htmx\.min\.js\?v=[0-9a-f]{12})"', html)
    assert src, "htmx link is not versioned"
    cached = client.get(src.group(1))
    assert "max-age=31536000" in cached.headers["Cache-Control"] and "immutable" in cached.headers["Cache-Control"]
    assert "max-age=31536000" not in (client.get("/static/js/htmx.min.js").headers.get("Cache-Control") or "")


@pytest.mark.parametrize("path_of", [
    lambda org: "/",
    lambda org: f"/cells/{org.cell.id}",
    lambda org: "/members/export.xlsx",
    lambda org: f"/meetings/{org.meeting.id}",
])
def test_authenticated_pages_fragments_and_exports_are_no_store(client, auth, org, path_of):
    """Shared tablets: nothing a logged-in person saw may be kept by the browser or a proxy."""
    auth.login("admin")
    path = path_of(org)
    for headers in ({}, {"HX-Request": "true"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, path
        assert response.headers.get("Cache-Control") == "no-store", path


def test_behind_a_trusted_proxy_cookies_are_secure_and_hsts_is_sent(tmp_path, org, app):
    """With CHIBO_TRUSTED_PROXIES=1 an HTTPS proxy's X-Forwarded-Proto gives Secure cookies and HSTS."""
    url = app.config["DATABASE_URL"]
    proxied = create_app({"TESTING": True, "SECRET_KEY": "t", "DATABASE_URL": url, "SEED_REFERENCE_DATA": False,
                          "TRUSTED_PROXIES": 1})
    client = proxied.test_client()
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    response = client.get("/login", headers=https)
    assert "max-age=31536000" in response.headers.get("Strict-Transport-Security", "")
    cookies = response.headers.getlist("Set-Cookie")
    assert cookies and all("Secure" in c for c in cookies)
    # Without the setting the same header is not believed: no HSTS over plain HTTP.
    plain = app.test_client().get("/login", headers=https)
    assert "Strict-Transport-Security" not in plain.headers
    assert all("Secure" not in c for c in plain.headers.getlist("Set-Cookie"))


def test_instance_files_are_private_from_creation(tmp_path, runner, app):
    """The instance folder is 0700; the secret key, a new database and a backup are 0600."""
    folder = tmp_path / "instance"
    old = os.umask(0o022)
    try:
        _private_dir(folder)
        key = folder / "secret_key"
        _instance_secret(key)
        fresh = create_app({"TESTING": True, "SECRET_KEY": "t", "SEED_REFERENCE_DATA": False,
                            "DATABASE_URL": f"sqlite:///{folder / 'new.sqlite3'}"})
        assert fresh is not None
        result = runner.invoke(args=["backup", "--dir", str(folder / "backups")])
        assert result.exit_code == 0, result.output
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "new.sqlite3").stat().st_mode) == 0o600
    backups = list((folder / "backups").iterdir())
    assert backups and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in backups)
    assert stat.S_IMODE((folder / "backups").stat().st_mode) == 0o700


def test_favicon_answers(client):
    """/favicon.ico is an icon, not a 404 and a console error."""
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response.mimetype.startswith("image/")
    assert response.data[:4] == b"\x00\x00\x01\x00"  # the ICO signature


def test_error_pages_do_not_echo_python(client, auth, org):
    """A 404 and a 405 speak Vietnamese, never werkzeug's or Python's words."""
    auth.login("admin")
    for response in (client.get("/khong-co-trang-nay"), client.post("/members")):
        text = response.get_data(as_text=True)
        assert response.status_code in (404, 405)
        assert "Traceback" not in text and "werkzeug" not in text.lower() and "The requested URL" not in text


def test_install_commands_work_on_an_externally_managed_python():
    """README and .ci/run install into a virtual environment (PEP 668), each set-up a single line."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    first = re.search(r"```bash\n(.+?)\n```", readme).group(1)
    assert "\n" not in first and "python3 -m venv .venv" in first and ".venv/bin/python" in first
    assert "pip install -e ." in first and "app.py --demo" in first
    assert "python3 -m venv" in ci and ".venv/bin/python -m pip install" in ci and "bash .ci/test" in ci
    assert '.venv/bin:$PATH' in ci  # the test command runs the virtual environment's python3
    assert not re.search(r"^python3 -m pip install", ci, re.M)
    assert "https://" in readme.split("A field node in three steps")[1].split("\n\n")[0]
