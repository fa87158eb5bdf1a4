"""How fast `ninsweep dashboard` is on a large experiment: the page, and each live update.

The experiment is bench_analysis.py's fake one (the real layout; lab4's grid x 5 learning
rates, seeds making up the trial count). Everything runs in this process except the
browser: Debian's chromium, headless, through playwright, on 127.0.0.1 only.

1. The page: the server is started on the finished experiment; a fresh page is opened and
   timed until the views at the top are drawn (``body[data-ready]`` and the curves' SVG:
   the page answers input from then on), then until every view is (``data-complete``: the
   trials table and the parallel coordinates are drawn when the browser is idle), then a
   metric change is timed (a second request and a redraw). Baseline
   in the same run: a page that only loads and runs plotly.js from the same server (what any
   plotly page costs). Goal (issue 22): interactive in under 2 s at 1,600 x 164.
2. An update: the manifest gives 16 trials more planned epochs, so they are running and the
   others finished, and the experiment is followed (``LiveExperiment``). Then K new records
   are appended across the running trials and ``refresh()`` is timed, for several K.
   Baseline in the same run: a full re-read
   (``analysis.load_experiment``, what re-reading on every update would cost). Goal: the
   update's cost grows with K, not with the experiment. The tables a changed experiment
   needs afterwards (``analysis.export_tables`` + the view's JSON, O(trials)) are timed
   apart: they are computed once per change, not per page.

    python bench/bench_dashboard.py                              # 1,600 x 164, ~3 min on 2 cores
    python bench/bench_dashboard.py --trials 80 --epochs 3 --repeats 1   # what the suite runs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from analysis_fixtures import epoch_record  # noqa: E402
from bench_analysis import make_fake_experiment  # noqa: E402
from benchutil import median  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--enable-unsafe-swiftshader"]
RUNNING = 16
PLOTLY_ONLY = ("<!doctype html><html><head><link rel='icon' href='data:,'></head><body>"
               "<div id='p'></div><script src='/static/plotly.min.js'></script>"
               "<script src='/static/baseline.js'></script></body></html>")
BASELINE_JS = ("Plotly.newPlot('p', [{x: [1, 2, 3], y: [1, 3, 2]}]).then(() => "
               "{ document.body.dataset.ready = '1'; });")


def page_times(exp: Path, repeats: int, root: Path) -> dict:
    from playwright.sync_api import sync_playwright

    from ninsweep.dashboard import assets
    from ninsweep.dashboard.server import DashboardServer, open_experiments

    start = time.perf_counter()
    served = open_experiments([str(exp)])
    server = DashboardServer(served, port=0)
    item = next(iter(served.values()))
    item.view(None)  # the first view is made at the first request; time it here
    first_view_s = time.perf_counter() - start
    # The baseline page, served by the same app (a route added for this run only).
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route

    server.app.router.routes.insert(0, Route("/baseline", lambda r: HTMLResponse(PLOTLY_ONLY)))
    server.app.router.routes.insert(0, Route("/static/baseline.js",
                                             lambda r: Response(BASELINE_JS, media_type="text/javascript")))
    assets.served_assets()  # read once, as at a real start
    server.start()
    samples = {"plotly.js alone": [], "dashboard page": [], "metric change": [], "every view": []}
    timings = []
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(root / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1400, "height": 1000})
            try:
                base = f"http://127.0.0.1:{server.port}"
                for _ in range(repeats):
                    page = context.new_page()
                    t = time.perf_counter()
                    page.goto(base + "/baseline")
                    page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                    samples["plotly.js alone"].append(time.perf_counter() - t)
                    page.close()
                    page = context.new_page()
                    t = time.perf_counter()
                    page.goto(server.url)
                    page.wait_for_selector("body[data-ready='1']", timeout=120_000)
                    page.wait_for_selector("#curves .main-svg", timeout=120_000)
                    samples["dashboard page"].append(time.perf_counter() - t)
                    page.wait_for_selector("body[data-complete]", timeout=120_000)
                    samples["every view"].append(time.perf_counter() - t)
                    other = page.eval_on_selector_all("#metric option", "os => os.map(o => o.value)")[1]
                    t = time.perf_counter()
                    page.select_option("#metric", other)
                    page.wait_for_function(f"() => document.querySelector('#curves').dataset.metric === '{other}'"
                                           " && document.querySelector('#curves .main-svg') !== null",
                                           timeout=120_000)
                    samples["metric change"].append(time.perf_counter() - t)
                    timings.append(page.evaluate("window.ninsweepTimings"))
                    page.close()
            finally:
                context.close()
    finally:
        server.stop()
    view_bytes = len(item.view(None))
    return {"first_view_s": first_view_s, "view_json_bytes": view_bytes,
            "median_s": {k: median(v) for k, v in samples.items()}, "samples": samples,
            "browser_ms": {k: median(t.get(k, 0) for t in timings) for k in timings[0]} if timings else {}}


def update_times(exp: Path, repeats: int, ks: list[int]) -> dict:
    from ninsweep import analysis as A
    from ninsweep.dashboard.live import LiveExperiment
    from ninsweep.dashboard.server import Served

    manifest = exp / "ninsweep.json"
    data = json.loads(manifest.read_text())
    # RUNNING trials still running (64 more epochs planned than written), the rest finished:
    # a sweep part-way through, as many trials at once as a cluster runs.
    running = data["trials"][:RUNNING]
    for entry in running:
        entry["config"]["train"]["epochs"] += 64
    manifest.write_text(json.dumps(data))
    trials = [exp / entry["name"] for entry in running]
    planned = data["trials"][-1]["config"]["train"]["epochs"]
    live = LiveExperiment(exp)
    served = Served("bench", live)
    served.view(None)
    full = []
    for _ in range(repeats):
        t = time.perf_counter()
        A.load_experiment(exp)
        full.append(time.perf_counter() - t)
    next_epoch = {p: planned + 1 for p in trials}
    out = {"full_reread_s": median(full), "refresh_s": {}, "tables_s": {}, "running": len(trials)}
    nothing = []
    for _ in range(repeats):
        t = time.perf_counter()
        live.refresh()
        nothing.append(time.perf_counter() - t)
    out["refresh_nothing_new_s"] = median(nothing)
    for k in ks:
        refresh, tables = [], []
        for r in range(repeats):
            # k new records spread over the running trials, as their epochs come in
            for i in range(k):
                path = trials[i % len(trials)]
                with open(path / "result.json", "a") as f:
                    f.write(json.dumps(epoch_record(next_epoch[path], 0.5)) + "\n")
                next_epoch[path] += 1
            t = time.perf_counter()
            before = live.records_read
            live.refresh()
            refresh.append(time.perf_counter() - t)
            assert live.records_read - before == k, (live.records_read - before, k)
            t = time.perf_counter()
            served._ensure()
            tables.append(time.perf_counter() - t)
        out["refresh_s"][k] = median(refresh)
        out["tables_s"][k] = median(tables)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1600)
    parser.add_argument("--epochs", type=int, default=164)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="only the update benchmark")
    parser.add_argument("--workdir", type=Path, help="where to write the fake experiment (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="bench-dashboard-", dir=args.workdir))
    result = {"trials": args.trials, "epochs": args.epochs, "cores": os.cpu_count(), "repeats": args.repeats}
    try:
        t = time.perf_counter()
        exp = make_fake_experiment(root, args.trials, args.epochs)
        print(f"fake experiment: {args.trials} trials x {args.epochs} epochs, written in "
              f"{time.perf_counter() - t:.1f} s (cores: {os.cpu_count()}, load average "
              f"{os.getloadavg()[0]:.1f}: the machine is shared)")
        result["load_average_start"] = os.getloadavg()[0]
        if not args.no_browser:
            pages = page_times(exp, args.repeats, root)
            result["page"] = pages
            base = pages["median_s"]["plotly.js alone"]
            print(f"first view (tables + JSON, {pages['view_json_bytes'] / 1e6:.2f} MB): {pages['first_view_s']:.2f} s")
            print(f"{'page':<18} {'median s':>9} {'x plotly.js alone':>18}")
            for name, value in pages["median_s"].items():
                print(f"{name:<18} {value:>9.2f} {value / base:>18.2f}")
            print("in the browser, median ms: " + ", ".join(f"{k} {v:.0f}" for k, v in pages["browser_ms"].items()))
            print(f"interactive (top views drawn + first answer to input): "
                  f"{pages['median_s']['dashboard page'] + pages['median_s']['metric change']:.2f} s")
        ks = [1, 16, 64]
        updates = update_times(exp, args.repeats, ks)
        result["update"] = updates
        full = updates["full_reread_s"]
        print(f"full re-read (load_experiment): {full * 1000:.0f} ms; refresh with nothing new: "
              f"{updates['refresh_nothing_new_s'] * 1000:.1f} ms")
        print(f"{'new records':>11} {'refresh ms':>11} {'x full re-read':>15} {'us / record':>12} {'tables ms':>10}")
        for k in ks:
            r = updates["refresh_s"][k]
            print(f"{k:>11} {r * 1000:>11.1f} {r / full:>15.4f} {r / k * 1e6:>12.0f} "
                  f"{updates['tables_s'][k] * 1000:>10.0f}")
        result["load_average_end"] = os.getloadavg()[0]
        print(f"load average at the end: {result['load_average_end']:.1f}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
