"""The device check's summary: bench/run_gpu.sh's parts in one JSON and one readable page.

Reads what the parts wrote into the output folder (grid_eager.json, grid_compile.json,
fidelity.json, versions.txt, status.txt), and writes device_check.json and summary.md
there: (a) throughput and MFU per packing, with and without torch.compile, against the
goals; (b) the fidelity probe's accuracy per epoch; (c) the projected wall time of lab4
and lab4-3seeds. A part that failed, timed out or was skipped is reported as such, never
filled in.

    python bench/gpu_check_summary.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

GOALS = {"lab4_minutes": 10.0, "speedup_4_vs_1": 2.0, "trial_start_s": 5.0, "mfu": 0.25}
PARTS = {"eager": "grid_eager.json", "compile": "grid_compile.json",
         "fidelity": "fidelity.json", "ray": "ray_sweep.json"}
LOGS = {"eager": "grid_eager.log", "compile": "grid_compile.log", "fidelity": "fidelity.log",
        "ray": "ray_sweep.log"}
CHECK_PARTS = ("eager", "compile", "fidelity")  # job check; "ray" is job sweep's part (d)


def read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_statuses(out: Path) -> dict[str, str]:
    """status.txt: one "part exit-status" line per part run_gpu.sh ran."""
    statuses = {}
    try:
        for line in (out / "status.txt").read_text().splitlines():
            part, _, status = line.partition(" ")
            statuses[part] = status.strip()
    except OSError:
        pass
    return statuses


def last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else ""


def describe_status(part: str, result: Optional[dict], status: Optional[str],
                    log_line: str = "") -> str:
    if status is None:
        return "not run"
    if status.startswith("skipped"):
        return status
    if status == "124":
        return "timed out (killed by its time limit)"
    if result is None:
        return f"failed (exit {status}, no result written)" + (f": {log_line}" if log_line
                                                                 else "")
    if "error" in result:
        return f"failed (exit {status}): {result['error'].strip().splitlines()[-1][:300]}"
    return "ok" if status == "0" else f"exit {status}"


def grid_summary(result: Optional[dict]) -> Optional[dict[str, Any]]:
    if not result or "packings" not in result or not result["packings"]:
        return None
    packings = {p["models"]: p for p in result["packings"]}
    one = packings.get(1)
    rows = []
    for models, p in sorted(packings.items()):
        rows.append({
            "models": models,
            "aggregate_images_per_s": p["aggregate_images_per_s"],
            "aggregate_tflops": p["aggregate_tflops"],
            "mfu_datasheet": p["mfu_datasheet"],
            "mfu_measured_peak": p["mfu_measured_peak"],
            "speedup_vs_1": (p["aggregate_images_per_s"] / one["aggregate_images_per_s"]
                             if one else None),
            "peak_gpu_mem_mb": max((m["peak_gpu_mem_mb"] or 0) for m in p["per_model"]) or None,
            "partial": any(m["partial"] for m in p["per_model"]),
            "projected_minutes": p.get("projected_minutes", {}),
        })
    best = min(rows, key=lambda r: r["projected_minutes"].get("lab4", float("inf")))
    return {"rows": rows, "best_models": best["models"],
            "best_projected_minutes": best["projected_minutes"],
            "at_lab4_packing": next((r for r in rows if r["models"] == 4), None),
            "trial_start_s": result["workers"]["setup_s"],
            "warmup_epoch_s": result["workers"]["warmup_epoch_s"],
            "host_syncs_per_epoch": result["workers"]["host_syncs_per_epoch"],
            "skipped_packings": result.get("skipped_packings", []),
            "device": result["device"], "peak": result["peak"]}


def summarise(out: Path) -> dict[str, Any]:
    statuses = read_statuses(out)
    results = {part: read_json(out / name) for part, name in PARTS.items()}
    summary: dict[str, Any] = {
        "format": 1,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": (out / "versions.txt").read_text() if (out / "versions.txt").is_file()
        else None,
        # The parts this job ran (status.txt has a line for each), or all when none did.
        "parts": {part: describe_status(part, results[part], statuses.get(part),
                                        last_line(out / LOGS[part]))
                  for part in PARTS if part in statuses
                  or not any(p in statuses for p in PARTS)},
        "goals": GOALS,
    }
    if statuses.get("install", "0") != "0":
        summary["install"] = (f"failed (exit {statuses['install']}): see versions.txt; "
                              "no part ran")
    for part in ("eager", "compile"):
        summary[part] = grid_summary(results[part])
    fidelity = results["fidelity"]
    summary["fidelity"] = fidelity if fidelity and "models" in fidelity else None
    ray = results["ray"]
    summary["ray"] = ray if ray and "runs" in ray else None
    return summary


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(summary: dict[str, Any]) -> str:
    lines = ["# Device check (bench/run_gpu.sh)", "", f"written {summary['written']}", ""]
    if summary["versions"]:
        lines += ["```", summary["versions"].strip()[-3000:], "```", ""]
    if summary.get("install"):
        lines += [f"**carried wheels / imports:** {summary['install']}", ""]
    lines += ["| part | status |", "|---|---|"]
    lines += [f"| {part} | {status} |" for part, status in summary["parts"].items()]
    lines.append("")
    if any(part in summary["parts"] for part in CHECK_PARTS):
        lines += check_sections(summary)
    if "ray" in summary["parts"]:
        lines += ray_section(summary)
    return "\n".join(lines) + "\n"


def ray_section(summary: dict[str, Any]) -> list[str]:
    lines = ["## (d) The mission's path: `ninsweep run` lab4 through Ray Tune on the GPU", ""]
    ray = summary["ray"]
    if ray is None:
        return lines + [f"no result ({summary['parts']['ray']}).", ""]
    lines += [f"on {ray['device']['name']} (torch {ray['device']['torch']}); data: "
              f"{ray['data']['source']} (ready in {ray['data']['ready_s']:.0f} s); "
              f"{ray['settings']['epochs']} epochs per trial", "",
              "| run | trial | Ray GPU ids | device | bf16 | epochs | images/s | peak GPU MiB "
              "| start s |", "|---|---|---|---|---|---:|---:|---:|---:|"]
    for key, run in ray["runs"].items():
        for t in run["trials"]:
            lines.append(f"| {key} | {t['trial']} | {t['gpu_ids']} | {t['device']} | "
                         f"{'on' if t['bf16'] else 'off'} | {t['epochs']} | "
                         f"{_fmt(t.get('median_images_per_s'), ',.0f')} | "
                         f"{_fmt(t['peak_gpu_mem_mb'], ',.0f')} | "
                         f"{_fmt(t.get('start_s'), '.2f')} |")
    lines += ["", "| run | GPU / CPU per trial | trials | wall s | aggregate images/s | "
              "TFLOP/s | MFU (bf16 datasheet) | slowest start s | lab4 projected min |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, run in ray["runs"].items():
        lines.append(f"| {key}{' (cut)' if run['cut'] else ''} | {run['gpus_per_trial']:g} / "
                     f"{run['cpus_per_trial']:g} | {run['trials_trained']} | "
                     f"{run['wall_s']:.0f} | {_fmt(run.get('aggregate_images_per_s'), ',.0f')} | "
                     f"{_fmt(run.get('aggregate_tflops'), '.2f')} | "
                     f"{_fmt(run.get('mfu'), '.1%')} | {_fmt(run.get('start_s_max'), '.2f')} | "
                     f"{_fmt(run.get('projected_lab4_minutes'), ',.1f')} |")
    lines += [f"- {key}: {run['error']}" for key, run in ray["runs"].items()
              if run.get("error")]
    lines += ["", f"- packed / one at a time, aggregate images/s: "
              f"{_fmt(ray.get('packed_vs_single'), '.2f')}x (goal >= "
              f"{GOALS['speedup_4_vs_1']:g}x)",
              f"- lab4 at the packed run's pace: "
              f"{_fmt(ray['runs']['packed'].get('projected_lab4_minutes'), '.1f')} min (goal <= "
              f"{GOALS['lab4_minutes']:g}); a trial's start: slowest "
              f"{_fmt(ray['runs']['packed'].get('start_s_max'), '.2f')} s (goal < "
              f"{GOALS['trial_start_s']:g} s)", ""]
    return lines


def check_sections(summary: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    lines += ["## (a) Throughput: the lab4 mix packed on one device", ""]
    for part in ("eager", "compile"):
        grid = summary[part]
        title = "torch.compile" if part == "compile" else "eager (no compile)"
        if grid is None:
            lines += [f"**{title}:** no measurement ({summary['parts'].get(part, 'not run')}).", ""]
            continue
        lines += [f"**{title}** on {grid['device']['name']}: trial start (Trainer set-up: CUDA "
                  f"context, data onto the device) {grid['trial_start_s']:.1f} s (goal < "
                  f"{GOALS['trial_start_s']:g} s); warm-up epoch {grid['warmup_epoch_s']:.1f} s"
                  + (f"; host syncs per epoch {grid['host_syncs_per_epoch']}"
                     if grid["host_syncs_per_epoch"] is not None else ""), "",
                  "| models | images/s | TFLOP/s | MFU (datasheet) | MFU (measured peak) | "
                  "x of 1 model | peak GPU MiB | lab4 min | lab4-3seeds min |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in grid["rows"]:
            lines.append(
                f"| {r['models']}{' (cut)' if r['partial'] else ''} | "
                f"{r['aggregate_images_per_s']:,.0f} | {r['aggregate_tflops']:.2f} | "
                f"{_fmt(r['mfu_datasheet'], '.1%')} | {r['mfu_measured_peak']:.1%} | "
                f"{_fmt(r['speedup_vs_1'], '.2f')} | {_fmt(r['peak_gpu_mem_mb'], ',.0f')} | "
                f"{_fmt(r['projected_minutes'].get('lab4'), ',.1f')} | "
                f"{_fmt(r['projected_minutes'].get('lab4-3seeds'), ',.1f')} |")
        if grid["skipped_packings"]:
            lines.append(f"\nskipped for time: {grid['skipped_packings']} models")
        lines.append("")

    lines += ["## (b) Fidelity probe: ELU+BN+WI and ReLU on the real images", ""]
    fidelity = summary["fidelity"]
    if fidelity is None:
        lines.append(f"no result ({summary['parts'].get('fidelity', 'not run')}).")
    else:
        plan = fidelity["plan"]
        names = list(fidelity["models"])
        lines += [f"{plan['epochs']} epochs, lr x0.1 after epochs {plan['milestones']} (the "
                  f"reference: {fidelity['reference']['milestones']} of "
                  f"{fidelity['reference']['epochs']})"
                  + ("; stopped early at the deadline" if fidelity["stopped_early"] else ""),
                  "", "| epoch | lr | " + " | ".join(f"{n} test %" for n in names) + " |",
                  "|---:|---:|" + "---:|" * len(names)]
        longest = max(len(m["history"]) for m in fidelity["models"].values())
        for index in range(longest):
            cells, lr = [], None
            for name in names:
                history = fidelity["models"][name]["history"]
                if index < len(history):
                    cells.append(f"{100 * history[index]['test_acc']:.2f}")
                    lr = history[index]["lr"]
                else:
                    cells.append("-")
            lines.append(f"| {index + 1} | {_fmt(lr, '.4g')} | " + " | ".join(cells) + " |")
        lines.append("")
        for name in names:
            m = fidelity["models"][name]
            lines.append(f"- {name}: {_fmt(m['final_test_acc_pct'], '.2f')}% after "
                         f"{m['epochs_done']} epochs (report: "
                         f"{m['report_acc_pct_164_epochs']:.2f}% after 164)")
        if fidelity["gap_pct"] is not None:
            lines.append(f"- gap ELU+BN+WI - ReLU: {fidelity['gap_pct']:+.2f} points (report "
                         f"{fidelity['reference']['gap_pct']:+.2f} after 164 epochs)")
    lines.append("")
    lines += ["## (c) Projected wall time", ""]
    for part in ("eager", "compile"):
        grid = summary[part]
        if grid is None:
            continue
        best = grid["best_projected_minutes"]
        at4 = grid["at_lab4_packing"]
        lines.append(
            f"- {part}: best packing {grid['best_models']} trials at once: lab4 "
            f"{_fmt(best.get('lab4'), '.1f')} min, lab4-3seeds "
            f"{_fmt(best.get('lab4-3seeds'), '.1f')} min"
            + (f"; at lab4.yaml's 0.25 GPU (4 at once): lab4 "
               f"{at4['projected_minutes']['lab4']:.1f} min, lab4-3seeds "
               f"{at4['projected_minutes']['lab4-3seeds']:.1f} min" if at4 else "")
            + f" (goal: lab4 < {GOALS['lab4_minutes']:g} min)")
    if summary["eager"] is None and summary["compile"] is None:
        lines.append("- no throughput was measured, so nothing is projected")
    lines += ["", "Projection: the trials in the space's order on N slots, the k running at "
              "any moment sharing the aggregate FLOP/s measured with k at once "
              "(bench/gpu_grid.py).", ""]
    return lines


def main(argv: Optional[list[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: gpu_check_summary.py OUT_DIR")
    out = Path(argv[0])
    summary = summarise(out)
    (out / "device_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
