"""The page's files: our template, script and style (package data in ``static/``) and
plotly.js as the ``plotly`` package ships it. Nothing is fetched from the internet: the
server serves this fixed table, and the HTML report inlines it.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
from pathlib import Path
from typing import Any

from ninsweep.dashboard.views import CURVE_METRICS
from ninsweep.errors import NinsweepError

STATIC = Path(__file__).with_name("static")
CURVE_METRIC_NAMES = frozenset(CURVE_METRICS)
OUR_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
PLOTLY_JS = "plotly.min.js"


def plotly_js_path() -> Path:
    """plotly.min.js inside the installed ``plotly`` package (found without importing it)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise NinsweepError("the dashboard needs plotly: pip install 'ninsweep[dashboard]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / PLOTLY_JS
    if not path.is_file():
        raise NinsweepError(f"{path}: missing from the plotly package; reinstall plotly")
    return path


@functools.lru_cache(maxsize=1)
def served_assets() -> dict[str, tuple[bytes, str]]:
    """name -> (content, media type): every file a page loads."""
    files = {name: ((STATIC / name).read_bytes(), media) for name, media in OUR_FILES.items()}
    files[PLOTLY_JS] = (plotly_js_path().read_bytes(), "text/javascript; charset=utf-8")
    return files


def _template(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _json_script(element_id: str, data: Any) -> str:
    """Data for the page in a non-executed script element ('</' escaped)."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _inline_script(code: bytes) -> str:
    return "<script>" + code.decode("utf-8").replace("</script", "<\\/script") + "</script>"


# The HTML report: nothing may be loaded from anywhere (it opens air-gapped, from an e-mail).
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
              "style-src 'unsafe-inline'; img-src data: blob:; font-src data:")


def page(config: dict[str, Any], inline: bool, data: Any = None) -> str:
    """One experiment's page: served (``inline`` False: scripts from /static/) or the
    self-contained report (everything inside, ``data`` the views)."""
    files = served_assets()
    if inline:
        head = (f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">'
                f"<style>{files['style.css'][0].decode('utf-8')}</style>")
        scripts = (_json_script("ninsweep-data", data) + _inline_script(files[PLOTLY_JS][0])
                   + _inline_script(files["app.js"][0]))
    else:
        head = '<link rel="stylesheet" href="/static/style.css">'
        scripts = '<script src="/static/plotly.min.js"></script><script src="/static/app.js"></script>'
    text = _template("page.html")
    return (text.replace("{{title}}", html.escape(str(config.get("title", ""))))
                .replace("{{head}}", head)
                .replace("{{config}}", _json_script("ninsweep-config", config))
                .replace("{{scripts}}", scripts))


def list_page(experiments: list[dict[str, Any]]) -> str:
    """The list of experiments a server shows (several given, or a storage folder)."""
    rows = "".join(
        f'<tr><td><a href="/e/{html.escape(e["key"])}/">{html.escape(e["name"])}</a></td>'
        f'<td>{html.escape(str(e["space"] or "-"))}</td><td>{e["n_trials"]}</td>'
        f'<td>{html.escape(e["summary"])}</td><td class="path">{html.escape(e["path"])}</td></tr>'
        for e in experiments)
    return (_template("list.html").replace("{{rows}}", rows)
            .replace("{{head}}", '<link rel="stylesheet" href="/static/style.css">'))
