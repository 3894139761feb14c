"""The app starts, pages are Vietnamese, security headers are set, errors are Vietnamese pages."""


def test_login_page_is_vietnamese_with_csp(client):
    """The login page speaks Vietnamese and carries the CSP without inline script."""
    response = client.get("/login")
    assert response.status_code == 200
    assert "Đăng nhập" in response.get_data(as_text=True)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_unknown_page_is_a_vietnamese_404(client, org, auth):
    """A missing page answers 404 in Vietnamese."""
    auth.login()
    response = client.get("/khong-co")
    assert response.status_code == 404
    assert "Không tìm thấy trang" in response.get_data(as_text=True)


def test_forbidden_page_is_vietnamese(client, org, auth):
    """Another cell's page answers 403 with a Vietnamese explanation."""
    auth.login("bithu2")
    response = client.get(f"/cells/{org.cell.id}")
    assert response.status_code == 403
    assert "Không có quyền truy cập" in response.get_data(as_text=True)


def test_server_error_page_is_vietnamese(app, client):
    """An unexpected error answers a Vietnamese 500 page that says saved data is safe."""
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken():
        raise RuntimeError("hỏng")

    app.add_url_rule("/hong", "broken", broken)
    response = client.get("/hong")
    assert response.status_code == 500
    assert "Lỗi hệ thống" in response.get_data(as_text=True)


def test_pages_load_nothing_from_the_internet(client, org, auth):
    """Every script and stylesheet on a page is served by this node (the tablets are offline)."""
    import re

    auth.login("bithu1")
    for path in ["/login", "/", f"/cells/{org.cell.id}", f"/meetings/{org.meeting.id}"]:
        html = client.get(path).get_data(as_text=True)
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not re.match(r"^(https?:)?//", url), f"{path} loads {url}"
    assert client.get("/static/js/htmx.min.js").status_code == 200
