"""The information centre's delivery dashboard: static files (index.html, app.js,
i18n.js, style.css) that the hub's read API serves at its root. They read only the
read API's JSON endpoints (see app.js)."""

from __future__ import annotations

from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parent
FILES = ("index.html", "app.js", "i18n.js", "style.css", "favicon.svg")
