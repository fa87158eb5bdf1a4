"""`ninsweep dashboard` and `report --html`, in a real browser (Debian's chromium through
playwright), plus the incremental reader and the server's refusals over plain HTTP.

The browser tests skip where /usr/bin/chromium is absent, except under CI (``CI`` set), where
they fail: .ci/run installs chromium. Screenshots of the views go to
``$NINSWEEP_TEST_ARTIFACTS`` (default ``test-artifacts/dashboard`` in the repository).
Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from analysis_fixtures import epoch_record, lab4_trials, make_experiment

from ninsweep import analysis as A
from ninsweep import cli
from ninsweep import metrics as M
from ninsweep.errors import NinsweepError

CHROMIUM = "/usr/bin/chromium"
# What headless chromium needs here to stay off the network (and a fresh profile each time).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader"]
ARTIFACTS = Path(os.environ.get("NINSWEEP_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard")
ROOT = Path(__file__).resolve().parents[2]


def _browser_or_skip():
    have = Path(CHROMIUM).is_file()
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        have = False
    if not have:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {CHROMIUM} or playwright missing (.ci/run installs them)")
        pytest.skip(f"{CHROMIUM} or playwright is absent (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        # A persistent context is the only way to give chromium a fresh --user-data-dir.
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()  # ends the chromium it started


class PageWatch:
    """A page with its console errors, uncaught exceptions and requests recorded."""

    def __init__(self, context):
        self.page = context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str):
        self.page.goto(url)
        self.page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        self.page.wait_for_selector("#curves .main-svg", timeout=60_000)
        self.page.wait_for_selector("body[data-complete]", timeout=60_000)
        return self.page

    def close(self):
        self.page.close()


def _shot(page, name: str, selector: str | None = None) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path


def _table(page, selector: str) -> list[dict[str, str]]:
    return page.eval_on_selector(selector, """t => {
        const head = Array.from(t.querySelectorAll('thead th')).map(th => th.textContent);
        return Array.from(t.querySelectorAll('tbody tr')).map(tr => Object.fromEntries(
            Array.from(tr.children).map((td, i) => [head[i], td.childNodes[0] ? td.childNodes[0].textContent : ''])));
    }""")


@pytest.fixture(scope="module")
def finished_exp(tmp_path_factory):
    """A finished 2 x 2 grid with 3 seeds per cell, one failed trial and one never started."""
    root = tmp_path_factory.mktemp("dash-finished")
    trials = lab4_trials({"ReLU": [90.1, 90.6, 90.9], "ELU": [91.0, 91.3, 91.4],
                          "ReLU+BN": [91.2, 91.5, 90.9], "ELU+BN": [91.6, 91.9, 91.8]}, epochs=4)
    trials += [{"activation": "elu", "batchnorm": True, "init": "he", "seed": 0, "epochs": 4, "done": 2,
                "state": "error"},
               {"activation": "elu", "batchnorm": True, "init": "he", "seed": 1, "epochs": 4, "state": "pending"}]
    return make_experiment(root, trials, name="ablation", space_name="ablation", epochs=4)


def _serve(paths, **kwargs):
    from ninsweep.dashboard.server import DashboardServer, open_experiments

    return DashboardServer(open_experiments([str(p) for p in paths]), port=0, **kwargs).start()


@pytest.fixture(scope="module")
def finished_server(finished_exp):
    server = _serve([finished_exp])
    yield server
    server.stop()


def _export(exp: Path, out: Path) -> tuple[list[dict], list[dict]]:
    assert cli.main(["export", str(exp), "-o", str(out / "x.csv")]) == 0
    with open(out / "x-configs.csv") as f:
        configs = list(csv.DictReader(f))
    with open(out / "x-effects.csv") as f:
        effects = list(csv.DictReader(f))
    return configs, effects


def _num(text: str) -> float:
    return float(text.replace("−", "-").replace("+", "").replace("%", ""))


def _check_numbers_match_export(page, configs_csv, effects_csv):
    """The page's config and effects tables against export's CSVs, cell by cell."""
    shown = {r["config"]: r for r in _table(page, "#configs-table")}
    assert set(shown) == {r["config"] for r in configs_csv}
    for row in configs_csv:
        cell = shown[row["config"]]
        assert cell["n"] == row["n"]
        if row["mean_test_acc_pct"]:
            mean, _, std = cell["test acc. % (mean ± std)"].partition(" ± ")
            assert _num(mean) == pytest.approx(float(row["mean_test_acc_pct"]), abs=0.0051)
            assert _num(std) == pytest.approx(float(row["std_test_acc_pct"]), abs=0.0051)
            lo, hi = re.findall(r"[-\d.]+", cell["95% CI"])
            assert float(lo) == pytest.approx(float(row["ci95_low_pct"]), abs=0.0051)
            assert float(hi) == pytest.approx(float(row["ci95_high_pct"]), abs=0.0051)
        else:
            assert cell["test acc. % (mean ± std)"] == "-"
        if row["p_holm"]:
            assert _num(cell["p (Holm)"]) == pytest.approx(float(row["p_holm"]), abs=0.00051)
        assert cell["verdict"] == row["verdict"]
    effects = _table(page, "#effects-table")
    assert len(effects) == len(effects_csv) > 0
    for cell, row in zip(effects, effects_csv):
        assert cell["factor"] == row["factor"]
        assert cell["level vs reference"] == f"{row['level']} vs {row['baseline']}"
        assert _num(cell["effect (points)"]) == pytest.approx(float(row["effect_pct"]), abs=0.0051)
        lo, hi = re.findall(r"-?[\d.]+", cell["95% CI"])
        assert float(lo) == pytest.approx(float(row["ci_low_pct"]), abs=0.0051)
        assert float(hi) == pytest.approx(float(row["ci_high_pct"]), abs=0.0051)


# ---------------------------------------------------------------- in the browser


@pytest.mark.slow  # a real browser: ~8-20 s on 2 busy cores
def test_finished_experiment_page_shows_export_numbers(browser, finished_server, finished_exp, tmp_path):
    watch = PageWatch(browser)
    page = watch.open(finished_server.url)
    configs_csv, effects_csv = _export(finished_exp, tmp_path)
    _check_numbers_match_export(page, configs_csv, effects_csv)
    trials = {r["trial"]: r for r in _table(page, "#trials-table")}
    assert len(trials) == 14
    assert trials["elu-bn-he-s0"]["status"] == A.ERROR and trials["elu-bn-he-s0"]["epoch"] == "2/4"
    assert trials["elu-bn-he-s1"]["status"] == A.PENDING
    assert trials["relu-s0"]["status"] == A.FINISHED and trials["relu-s0"]["epoch"] == "4/4"
    counts = page.inner_text("#counts")
    assert "12 finished" in counts and "1 error" in counts and "1 pending" in counts
    # The curves start with the objective's metric; every other metric is one choice away.
    options = page.eval_on_selector_all("#metric option", "os => os.map(o => o.value)")
    assert options[0] == M.TEST_ACC and {M.TRAIN_LOSS, M.TEST_LOSS, M.TRAIN_ACC} <= set(options)
    # 4 configs with a band and a mean, one config (the failed trial) a mean only.
    assert page.eval_on_selector("#curves", "d => d.data.length") == 4 * 2 + 1
    page.select_option("#metric", M.TRAIN_LOSS)
    page.wait_for_function("() => document.querySelector('#curves').dataset.metric === 'train_loss'")
    assert page.eval_on_selector("#curves", "d => d.layout.yaxis.title.text") == "training loss"
    # Parallel coordinates: activation, batchnorm and the objective; one line per finished trial.
    assert page.eval_on_selector("#parcoords", "d => d.layout.xaxis.ticktext.length") == 3
    gaps = "d => d.data.reduce((n, t) => n + t.x.filter(x => x === null).length, 0)"
    assert page.eval_on_selector("#parcoords", gaps) == 12
    _shot(page, "parcoords-svg", "#parcoords-section")
    page.check("#brushing")  # plotly's parcoords trace (WebGL), for selecting ranges
    page.wait_for_function("() => document.querySelector('#parcoords').data[0].type === 'parcoords'")
    assert page.eval_on_selector("#parcoords", "d => d.data[0].dimensions.length") == 3
    assert page.eval_on_selector("#forest", "d => d.data.reduce((n, t) => n + t.x.length, 0)") == 3
    for name, selector in (("finished-page", None), ("effects", "#effects-section"),
                           ("configs", "#configs-section"), ("parcoords-webgl", "#parcoords-section"),
                           ("trials", "#trials-section")):
        _shot(page, name, selector)
    page.select_option("#metric", M.TEST_ACC)
    page.wait_for_function("() => document.querySelector('#curves').dataset.metric === 'test_acc'")
    _shot(page, "curves", "#curves-section")
    assert watch.errors == []
    assert all(u.startswith(f"http://127.0.0.1:{finished_server.port}/") for u in watch.requests), watch.requests
    watch.close()


@pytest.mark.slow  # a real browser: ~8-20 s on 2 busy cores
def test_running_sweep_page_shows_each_new_epoch(browser, tmp_path):
    specs = [{"activation": a, "seed": s, "epochs": 5, "done": d}
             for a, d in (("relu", 5), ("elu", 2)) for s in (0, 1)]
    exp = make_experiment(tmp_path, specs, name="running", epochs=5)
    server = _serve([exp])
    try:
        watch = PageWatch(browser)
        page = watch.open(server.url)
        row = "#trials-table tr[data-trial='elu-s0']"
        assert page.inner_text(f"{row} td[data-col='epoch']") == "2/5"
        assert page.inner_text(f"{row} td[data-col='status']") == A.RUNNING
        elu_last = ("() => { const d = document.querySelector('#curves');"
                    " const g = d.data.find(t => t.name && t.name.startsWith('ELU (')).legendgroup;"
                    " return Math.max(...d.data.filter(t => t.legendgroup === g).map(t => Math.max(...t.x))); }")
        before = page.evaluate(elu_last)
        with open(exp / "elu-s0" / "result.json", "a") as f:
            f.write(json.dumps(epoch_record(3, 0.4)) + "\n")
        # The report reaches the page within 10 s (the page polls every second).
        page.wait_for_function(
            "() => document.querySelector(\"#trials-table tr[data-trial='elu-s0'] td[data-col='epoch']\")"
            ".textContent === '3/5'", timeout=10_000)
        page.wait_for_function(f"() => ({elu_last})() === 3", timeout=10_000)
        assert before == 2  # no finished trial yet in elu: its curve is drawn from the started ones
        # A trial that finishes leaves the running count.
        with open(exp / "elu-s0" / "result.json", "a") as f:
            f.write("".join(json.dumps(epoch_record(e, 0.45)) + "\n" for e in (4, 5)))
        page.wait_for_function(
            "() => document.querySelector(\"#trials-table tr[data-trial='elu-s0']\").dataset.status === 'finished'",
            timeout=10_000)
        assert "1 running" in page.inner_text("#counts")
        _shot(page, "running-page")
        assert watch.errors == []
        watch.close()
    finally:
        server.stop()


@pytest.mark.slow  # a real browser: ~8-20 s on 2 busy cores
def test_curves_of_a_large_grid_draw_the_best_and_a_list_adds_others(browser, tmp_path):
    """12 configs: the 10 best (by the config table's rank) are drawn; the list adds one."""
    specs = [{"activation": a, "seed": s, "extra": {"train.lr": lr}, "final_acc": 0.5 + 0.01 * i + 0.001 * s,
              "name": f"{a}-lr{lr}-s{s}"}
             for i, (a, lr) in enumerate((a, lr) for a in ("relu", "elu", "selu", "tanh") for lr in (0.01, 0.05, 0.1))
             for s in (0, 1)]
    exp = make_experiment(tmp_path, specs, name="grid")
    server = _serve([exp])
    try:
        watch = PageWatch(browser)
        page = watch.open(server.url)
        ranked = [r["config"] for r in _table(page, "#configs-table")]
        drawn = page.eval_on_selector("#curves", "d => d.data.filter(t => t.name).map(t => t.name.split(' (')[0])")
        assert drawn == ranked[:10] and len(ranked) == 12
        assert page.eval_on_selector("#curves", "d => d.data.length") == 10 * 2  # band + mean each
        assert "10 of 12 configurations drawn" in page.inner_text("#curves-note")
        page.locator("#curves-picker input[value='%s']" % ranked[11]).check()
        page.wait_for_function("() => document.querySelector('#curves').data.length === 22")
        assert "11 of 12" in page.inner_text("#curves-note")
        _shot(page, "curves-picker", "#curves-section")
        assert watch.errors == []
        watch.close()
    finally:
        server.stop()


@pytest.mark.slow  # a real browser: ~8-20 s on 2 busy cores
def test_html_report_is_self_contained(browser, finished_exp, finished_server, tmp_path):
    out = tmp_path / "report"
    assert cli.main(["report", str(finished_exp), "-o", str(out), "--html"]) == 0
    html = (out / "report.html").read_text()
    assert (out / "report.md").is_file()
    assert not re.search(r"<(script|link)[^>]+(src|href)=\"(?!data:)", html)  # nothing loaded by reference
    watch = PageWatch(browser)
    blocked = []

    def only_the_file(route):
        if route.request.url.startswith("file://"):
            return route.continue_()
        blocked.append(route.request.url)
        return route.abort()

    watch.page.route("**/*", only_the_file)
    page = watch.open((out / "report.html").as_uri())
    assert blocked == [] and watch.requests == [(out / "report.html").as_uri()]
    configs_csv, effects_csv = _export(finished_exp, tmp_path)
    _check_numbers_match_export(page, configs_csv, effects_csv)
    page.select_option("#metric", M.TEST_LOSS)  # every metric's curves are inside the file
    page.wait_for_function("() => document.querySelector('#curves').dataset.metric === 'test_loss'")
    assert page.eval_on_selector("#curves", "d => d.data.length") == 9
    _shot(page, "html-report")
    assert watch.errors == []
    watch.close()


# ---------------------------------------------------------------- the server over HTTP


def _get(url: str, headers=None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _raw(port: int, path: str, host: str = "127.0.0.1") -> tuple[int, bytes]:
    """A request line sent as written (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", f"{host}:{port}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_no_request_reaches_a_file_outside_the_results(finished_server, finished_exp):
    port = finished_server.port
    assert _raw(port, "/static/app.js")[0] == 200
    assert _raw(port, "/e/ablation/api/view")[0] == 200
    secret = finished_exp / "relu-s0" / "result.json"
    probes = ["/../../etc/passwd", "/static/../../etc/passwd", "/static/..%2f..%2fetc%2fpasswd",
              "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%5c..%5cetc%5cpasswd", "/etc/passwd",
              "/static//etc/passwd", "/static/app.js/../../../../etc/passwd", "/e/..%2f..%2fetc/api/view",
              "/e/ablation/api/curves/..%2f..%2f..%2fetc%2fpasswd", "/e/ablation/../../etc/passwd",
              "/e/ablation/ninsweep.json", "/e/ablation/relu-s0/result.json", "/e/ablation/api/../ninsweep.json",
              "/static/..", f"/static/{secret}", "/e/ablation/api/curves/epoch", "/static/page.html",
              "/static/../../../../../../pyproject.toml", "/e/%2e%2e/api/view"]
    passwd = Path("/etc/passwd").read_bytes()[:20]
    results = secret.read_bytes()[:40]
    for path in probes:
        status, body = _raw(port, path)
        assert status in (400, 404), (path, status)
        assert passwd not in body and results not in body and b"root:" not in body, path


def test_loopback_server_refuses_other_host_names(finished_server):
    assert _raw(finished_server.port, "/e/ablation/api/view", host="localhost")[0] == 200
    # A page elsewhere reaching 127.0.0.1 through its own DNS name (rebinding) is refused.
    assert _raw(finished_server.port, "/e/ablation/api/view", host="attacker.example")[0] == 400


def test_token_server_refuses_requests_without_it(finished_exp):
    from ninsweep.dashboard.server import build_app, is_loopback, open_experiments

    # Off loopback there is no app without a token.
    with pytest.raises(NinsweepError, match="token"):
        build_app(open_experiments([str(finished_exp)]), token=None, host="0.0.0.0")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("::")
    assert is_loopback("127.0.0.1") and is_loopback("127.3.2.1") and is_loopback("::1") and is_loopback("localhost")
    server = _serve([finished_exp], token="s3cret-token")
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert server.url.endswith("?token=s3cret-token")
        for path in ("/", "/e/ablation/", "/e/ablation/api/view", "/static/app.js", "/api/experiments"):
            status, body = _get(base + path)
            assert status == 403 and b"ablation" not in body, path
            assert _get(base + path + "?token=wrong")[0] == 403
            assert _get(base + path, {"Authorization": "Bearer wrong"})[0] == 403
        assert _get(base + "/e/ablation/api/view", {"Authorization": "Bearer s3cret-token"})[0] == 200
        # The address printed at start opens the page and leaves the token in a cookie.
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(server.url, timeout=30) as response:
            assert response.status == 200 and b"ninsweep-config" in response.read()
        with opener.open(base + "/e/ablation/api/view", timeout=30) as response:
            assert json.loads(response.read())["experiment"]["name"] == "ablation"
    finally:
        server.stop()


def test_storage_folder_lists_its_experiments(tmp_path):
    make_experiment(tmp_path, [{"seed": 0}], name="first")
    make_experiment(tmp_path, [{"seed": 0}, {"seed": 1, "state": "pending"}], name="second")
    server = _serve([tmp_path])
    try:
        base = f"http://127.0.0.1:{server.port}"
        status, body = _get(base + "/")
        assert status == 200 and b'href="/e/first/"' in body and b'href="/e/second/"' in body
        listed = json.loads(_get(base + "/api/experiments")[1])
        assert [e["name"] for e in listed] == ["first", "second"]
        assert listed[1]["summary"] == "1 finished, 1 pending"
        assert _get(base + "/e/second/")[0] == 200
    finally:
        server.stop()


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, finished_exp, monkeypatch):
    from ninsweep.dashboard.server import DashboardServer

    def started(self):  # bad input must stop before serving: a test that would hang fails
        self.socket.close()
        raise AssertionError("the server started")

    monkeypatch.setattr(DashboardServer, "run", started)
    assert cli.main(["dashboard", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such experiment directory" in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["dashboard", str(tmp_path / "empty")]) == 2
    assert "not a ninsweep experiment" in capsys.readouterr().err
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        assert cli.main(["dashboard", str(finished_exp), "--port", str(taken.getsockname()[1])]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "cannot listen there" in err
    finally:
        taken.close()
    assert cli.main(["dashboard", str(finished_exp), "--port", "70000"]) == 2
    assert "not a port" in capsys.readouterr().err


def test_dashboard_imports_neither_torch_nor_ray():
    code = ("import sys, ninsweep.dashboard.server, ninsweep.dashboard.html, ninsweep.dashboard.live; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'ray')]; print(bad); "
            "sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- the incremental reader


def _same(live_exp, exp_dir):
    fresh = A.load_experiment(exp_dir)
    assert [t.name for t in live_exp.trials] == [t.name for t in fresh.trials]
    for a, b in zip(live_exp.trials, fresh.trials):
        assert a.status == b.status, a.name
        assert a.trial_dir == b.trial_dir
        assert set(b.metrics) <= set(a.metrics)
        for key in b.metrics:
            np.testing.assert_array_equal(a.metrics[key], b.metrics[key], err_msg=f"{a.name} {key}")
    assert A.trial_table(live_exp).equals(A.trial_table(fresh))


def test_live_reader_reads_what_load_experiment_reads(tmp_path):
    """Appends of every kind -- whole records, half lines, an epoch repeated after a restore,
    a new trial directory, an error -- and after each the followed experiment equals a
    fresh load_experiment."""
    from ninsweep.dashboard.live import LiveExperiment

    specs = [{"activation": "relu", "seed": s, "epochs": 8, "done": 1} for s in range(2)]
    specs.append({"activation": "elu", "seed": 0, "epochs": 8, "state": "pending"})
    exp = make_experiment(tmp_path, specs, name="live", epochs=8)
    live = LiveExperiment(exp)
    _same(live.experiment(), exp)
    rng = random.Random(3)
    files = [exp / "relu-s0" / "result.json", exp / "relu-s1" / "result.json"]
    epochs = {f: 1 for f in files}
    pending = {f: "" for f in files}
    for step in range(40):
        f = files[step % 2]
        choice = rng.random()
        if choice < 0.15 and epochs[f] > 2:
            epochs[f] -= 2  # restored from an older checkpoint: reports an earlier epoch again
        epochs[f] = min(7, epochs[f] + 1)  # the last epoch (8) comes below
        text = pending[f] + json.dumps(epoch_record(epochs[f], rng.random(), time_total_s=step + 1.0)) + "\n"
        pending[f] = ""
        if choice > 0.8:  # half a line now, the rest with the file's next record
            text, pending[f] = text[:len(text) - 40], text[len(text) - 40:]
        with open(f, "a") as out:
            out.write(text)
        live.refresh()
        _same(live.experiment(), exp)
    for f in files:
        with open(f, "a") as out:
            out.write(pending[f] + json.dumps(epoch_record(8, 0.6)) + "\n")
    live.refresh()
    _same(live.experiment(), exp)
    assert [t.status for t in live.experiment().trials[:2]] == [A.FINISHED, A.FINISHED]
    before = live.records_read
    assert live.refresh() is False and live.records_read == before  # nothing new: nothing read
    # A new trial directory (a pending trial starts), then its error.
    tdir = exp / "elu-s0"
    tdir.mkdir()
    entry = next(t for t in json.loads((exp / "ninsweep.json").read_text())["trials"] if t["name"] == "elu-s0")
    (tdir / "params.json").write_text(json.dumps({"trial": entry}))
    (tdir / "result.json").write_text(json.dumps(epoch_record(1, 0.2)) + "\n")
    assert live.refresh() is True
    _same(live.experiment(), exp)
    (tdir / "error.txt").write_text("RuntimeError: boom\n")
    (tdir / "result.json").write_text(json.dumps(epoch_record(1, 0.2)) + "\n"
                                      + json.dumps(epoch_record(2, 0.3)) + "\n")
    live.refresh()
    _same(live.experiment(), exp)
    assert next(t for t in live.experiment().trials if t.name == "elu-s0").status == A.ERROR


def test_live_reader_reads_only_the_new_bytes(tmp_path, monkeypatch):
    from ninsweep.dashboard import live as L

    exp = make_experiment(tmp_path, [{"seed": s, "epochs": 50, "done": 40} for s in range(3)], name="e", epochs=50)
    followed = L.LiveExperiment(exp)
    parsed: list[int] = []
    for name in ("parse_results", "parse_lines"):  # the analysis's parsers, as live uses them
        real = getattr(L, name)
        monkeypatch.setattr(L, name, lambda data, path, columns, real=real: parsed.append(len(data))
                            or real(data, path, columns))
    line = json.dumps(epoch_record(41, 0.5)) + "\n"
    with open(exp / "relu-s1" / "result.json", "a") as f:
        f.write(line)
    assert followed.refresh() is True
    assert parsed == [len(line.encode())]  # one file, one line: the others were not read
    assert followed.records_read == 3 * 40 + 1


def test_remote_experiment_is_fetched_and_followed(tmp_path, monkeypatch):
    """s3:// (here pyarrow's local filesystem standing in for the bucket, as in
    test_analysis): fetched as export fetches it, then refetched and followed."""
    import pyarrow.fs

    from ninsweep import storage
    from ninsweep.dashboard.live import LiveExperiment

    remote = make_experiment(tmp_path / "bucket", [{"seed": 0, "epochs": 4, "done": 2}], name="lab4", epochs=4)
    (remote / "relu-s0" / "checkpoint_000001").mkdir()
    (remote / "relu-s0" / "checkpoint_000001" / "state.pt").write_bytes(b"x" * 100)

    def filesystem(location):
        assert location.startswith("s3://bucket")
        return pyarrow.fs.LocalFileSystem(), str(tmp_path / "bucket") + location[len("s3://bucket"):]

    monkeypatch.setattr(storage, "filesystem", filesystem)
    monkeypatch.setenv("NINSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    now = [1000.0]
    live = LiveExperiment("s3://bucket/lab4", remote_every_s=15, clock=lambda: now[0])
    assert live.path.is_relative_to(tmp_path / "cache") and not list(live.path.rglob("checkpoint_*"))
    assert live.experiment().trials[0].epochs_done == 2
    with open(remote / "relu-s0" / "result.json", "a") as f:
        f.write(json.dumps(epoch_record(3, 0.4)) + "\n")
    assert live.refresh() is False  # not fetched again yet
    now[0] += 15
    assert live.refresh() is True and live.experiment().trials[0].epochs_done == 3
    _same(live.experiment(), live.path)


def test_dashboard_benchmark_times_updates_against_a_full_reread(tmp_path):
    """bench/bench_dashboard.py on tiny sizes, without the browser part (the browser tests
    above drive the same page)."""
    out = tmp_path / "dash.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_dashboard.py"), "--trials", "80",
                           "--epochs", "3", "--repeats", "1", "--no-browser", "--workdir", str(tmp_path),
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())["update"]
    assert result["full_reread_s"] > 0 and result["running"] == 16
    assert set(result["refresh_s"]) == {"1", "16", "64"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("bench-dashboard-")]  # cleaned up


def test_a_pooled_interval_says_what_it_rests_on_in_the_effects_table(tmp_path):
    """An unreplicated 2^3 (one seed per cell): its main effects' intervals rest on the
    interactions pooled as error, and the page's table says so beside each interval."""
    from ninsweep.dashboard.views import build_view

    rng = random.Random(3)
    trials = [{"activation": a, "batchnorm": b, "init": i,
               "final_acc": 0.5 + 0.1 * b + 0.02 * (i == "he") + rng.gauss(0, 0.01)}
              for a in ("relu", "elu") for b in (False, True) for i in ("keras", "he")]
    exp = A.load_experiment(make_experiment(tmp_path, trials))
    rows = build_view(exp)["effects"]["rows"]
    mains = [r["cells"][4] for r in rows if r["kind"] == "main"]
    assert mains and all(cell.endswith("(pooled interactions (df=4))") for cell in mains), mains
