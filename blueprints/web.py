"""Web plumbing shared by every blueprint: extensions, security headers, error pages, filters.

Security headers come from this one place: a CSP with no inline script or style, nosniff, a strict
referrer policy, and HSTS plus Secure cookies when served over HTTPS (behind a reverse proxy, set
CHIBO_TRUSTED_PROXIES to the number of proxies so werkzeug's ProxyFix reads their X-Forwarded-*).
Every dynamic response is `Cache-Control: no-store` (shared tablets: the back button must not show
the last person's pages); static files are served under `?v=<content hash>` URLs and cached for a
year. Text responses are gzip-compressed when the browser accepts it. An expired login during an
htmx request answers with HX-Redirect so the login page never lands inside a fragment.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from pathlib import Path

from flask import Flask, has_request_context, jsonify, redirect, render_template, request, send_from_directory, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_htmx import HTMX
from flask_login import LoginManager
from flask_wtf.csrf import CSRFError, CSRFProtect

from models import User
from models.base import LOCAL_TZ

login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
htmx = HTMX()


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

ERROR_TITLES = {
    400: "Yêu cầu không hợp lệ",
    403: "Không có quyền truy cập",
    404: "Không tìm thấy trang",
    405: "Thao tác không được phép",
    413: "Dữ liệu gửi lên quá lớn",
    422: "Dữ liệu không hợp lệ",
    500: "Lỗi hệ thống",
}
ERROR_TEXTS = {
    400: "Yêu cầu gửi lên không đúng. Vui lòng tải lại trang và thử lại.",
    403: "Tài khoản của đồng chí không có quyền xem hoặc sửa nội dung này.",
    404: "Trang hoặc bản ghi đồng chí tìm không tồn tại hoặc đã bị xóa.",
    405: "Thao tác này không được phép tại địa chỉ này.",
    413: "Tệp hoặc dữ liệu gửi lên vượt quá giới hạn cho phép.",
    422: "Dữ liệu gửi lên không hợp lệ.",
    500: "Đã có lỗi ngoài ý muốn. Dữ liệu đã lưu trước đó vẫn an toàn; vui lòng thử lại.",
}


def _refuse_nul_bytes():
    """A NUL character is never valid input (PostgreSQL cannot even store it): 400 before any query."""
    from flask import abort, request

    values = list(request.args.values()) + (list(request.form.values()) if request.mimetype and "form" in request.mimetype else [])
    if any("\x00" in value for value in values) or "\x00" in request.path:
        abort(400, description="Dữ liệu gửi lên chứa ký tự không hợp lệ (NUL).")


def init_web(app: Flask) -> None:
    """Wire extensions, headers, error handlers and template helpers into the app."""
    app.before_request(_refuse_nul_bytes)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=lambda: "vi", timezone_selector=lambda: "Asia/Ho_Chi_Minh")
    htmx.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Vui lòng đăng nhập để tiếp tục."
    login_manager.login_message_category = "info"
    login_manager.user_loader(_load_user)
    login_manager.unauthorized_handler(_unauthorized)

    proxies = int(app.config.get("TRUSTED_PROXIES", 0) or 0)
    if proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_prefix=proxies)
    app.session_interface = _SessionInterface()
    app.url_defaults(_static_version)
    app.add_url_rule("/favicon.ico", "favicon", _favicon)
    app.after_request(_compress)
    app.after_request(_cache_headers)
    app.after_request(_security_headers)
    for code in ERROR_TITLES:
        app.register_error_handler(code, _error_page)
    app.register_error_handler(CSRFError, _csrf_error)

    app.jinja_env.filters["vn_date"] = vn_date
    app.jinja_env.filters["vn_datetime"] = vn_datetime
    app.jinja_env.filters["vn_time"] = vn_time
    app.jinja_env.filters["pct"] = pct
    app.context_processor(lambda: {"node_role": app.config["ROLE"], "node_id": app.config["NODE_ID"],
                                   "demo_mode": app.config.get("DEMO")})


def _load_user(user_id: str):
    """The logged-in account, only while the cookie's session is still live on this node."""
    from flask import current_app, session

    from models.users import session_valid

    user = User.get_or_none((User.id == user_id) & User.deleted_at.is_null())
    hours = float(current_app.config.get("SESSION_ABSOLUTE_HOURS", 12))
    if user is None or not session_valid(session.get("sid"), user, absolute_hours=hours):
        session.clear()
        return None
    return user


def _unauthorized():
    target = request.headers.get("HX-Current-URL") or request.full_path
    login = url_for("auth.login", next=_local_path(target))
    if request.headers.get("HX-Request"):
        return "", 200, {"HX-Redirect": login}
    if request.blueprint == "sync_api" or request.accept_mimetypes.best == "application/json":
        return jsonify(error="unauthorized", message="Cần đăng nhập."), 401
    return redirect(login)


def _local_path(url: str) -> str:
    """Keep only the path and query of a URL, so `next` can never leave this site."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = parts.path if parts.path.startswith("/") and not parts.path.startswith("//") else "/"
    return path + (f"?{parts.query}" if parts.query else "")


def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.add("Vary", "HX-Request")
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        # Served over HTTPS (directly or via a trusted proxy): the session cookie never travels in clear.
        cookies = response.headers.getlist("Set-Cookie")
        if cookies:
            response.headers.remove("Set-Cookie")
            for cookie in cookies:
                response.headers.add("Set-Cookie", cookie if "; Secure" in cookie else cookie + "; Secure")
    return response


class _SessionInterface(SecureCookieSessionInterface):
    """The signed-cookie session, marked Secure whenever this request came over HTTPS."""

    def get_cookie_secure(self, app) -> bool:
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or (has_request_context() and request.is_secure)


_STATIC_VERSIONS: dict[str, tuple[float, str]] = {}


def _static_version(endpoint: str, values: dict) -> None:
    """url_for('static', …) gets ?v=<content hash>, so a changed file gets a new URL."""
    if endpoint != "static" or "v" in values or "filename" not in values:
        return
    from flask import current_app

    path = Path(current_app.static_folder) / values["filename"]
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return
    cached = _STATIC_VERSIONS.get(str(path))
    if cached is None or cached[0] != mtime:
        cached = (mtime, hashlib.sha256(path.read_bytes()).hexdigest()[:12])
        _STATIC_VERSIONS[str(path)] = cached
    values["v"] = cached[1]


def _favicon():
    """The tab icon browsers ask for at the root."""
    from flask import current_app

    response = send_from_directory(Path(current_app.static_folder) / "icons", "favicon.ico",
                                   mimetype="image/vnd.microsoft.icon")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


def _cache_headers(response):
    """Versioned static files: cached a year. Everything dynamic: never stored (shared tablets)."""
    if request.endpoint == "static":
        if request.args.get("v") and response.status_code == 200:
            response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    elif request.endpoint != "favicon":
        response.headers["Cache-Control"] = "no-store"
    return response


COMPRESSIBLE = {"text/html", "text/css", "text/javascript", "application/javascript", "application/json",
                "image/svg+xml", "text/plain", "text/csv"}
_GZIP_CACHE: dict[str, tuple[str, bytes]] = {}


def _compress(response):
    """Gzip text responses when the browser accepts it (a tablet on office Wi-Fi loads 3x less)."""
    if (response.status_code != 200 or "gzip" not in request.headers.get("Accept-Encoding", "").lower()
            or response.mimetype not in COMPRESSIBLE or "Content-Encoding" in response.headers
            or response.is_streamed and not response.direct_passthrough):
        return response
    response.direct_passthrough = False
    data = response.get_data()
    if len(data) < 500:
        return response
    if request.endpoint == "static":
        # Static files are the same bytes each time: compress each version once.
        key = request.path
        digest = hashlib.sha256(data).hexdigest()
        cached = _GZIP_CACHE.get(key)
        if cached is None or cached[0] != digest:
            cached = (digest, gzip.compress(data, 6))
            _GZIP_CACHE[key] = cached
        body = cached[1]
    else:
        body = gzip.compress(data, 6)
    response.set_data(body)
    response.headers["Content-Encoding"] = "gzip"
    response.vary.add("Accept-Encoding")
    return response


def _error_page(error):
    code = getattr(error, "code", 500) or 500
    if request.blueprint == "sync_api":
        return jsonify(error=str(code), message=ERROR_TEXTS.get(code, "")), code
    description = getattr(error, "description", None)
    text = description if isinstance(description, str) and _is_vietnamese(description) else ERROR_TEXTS.get(code)
    template = "errors/_error.html" if request.headers.get("HX-Request") else "errors/error.html"
    return render_template(template, code=code, title=ERROR_TITLES.get(code, "Lỗi"), text=text), code


def _is_vietnamese(text: str) -> bool:
    """Werkzeug's default descriptions are English; ours (passed to abort) carry diacritics."""
    return any(ord(ch) > 127 for ch in text)


def _csrf_error(error):
    from flask_login import current_user

    # The CSRF token lives in the session: after an idle expiry the check fails before the view's
    # login check runs, so send the person to log in (HX-Redirect for htmx) instead of a form error.
    if not current_user.is_authenticated and request.endpoint != "auth.login":
        return _unauthorized()
    text = "Phiên làm việc đã hết hạn hoặc biểu mẫu không hợp lệ. Vui lòng tải lại trang và thử lại."
    template = "errors/_error.html" if request.headers.get("HX-Request") else "errors/error.html"
    return render_template(template, code=400, title="Biểu mẫu không hợp lệ", text=text), 400


def to_local(value: dt.datetime) -> dt.datetime:
    """Stored naive-UTC datetime to Asia/Ho_Chi_Minh."""
    return value.replace(tzinfo=dt.timezone.utc).astimezone(LOCAL_TZ)


def vn_date(value) -> str:
    """dd/mm/yyyy; datetimes are shown in local time."""
    if not value:
        return ""
    if isinstance(value, dt.datetime):
        value = to_local(value)
    return value.strftime("%d/%m/%Y")


def vn_datetime(value) -> str:
    """dd/mm/yyyy HH:MM in local time (24 h)."""
    if not value:
        return ""
    return to_local(value).strftime("%d/%m/%Y %H:%M")


def vn_time(value) -> str:
    """HH:MM, 24 h."""
    return value.strftime("%H:%M") if value else ""


def pct(value, digits: int = 1) -> str:
    """A percentage with a Vietnamese decimal comma: 87,5%."""
    if value is None:
        return "—"
    text = f"{value:.{digits}f}".replace(".", ",")
    if "," in text:
        text = text.rstrip("0").rstrip(",")
    return f"{text}%"
