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
