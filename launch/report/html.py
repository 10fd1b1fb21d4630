"""The report's index.html: readable straight from disk (relative links, no scripts), laid out for the page width.

Plots sit in a grid that fills the window (two or three across on a 1280-pixel window); each wide table scrolls
inside its own box, so the page itself never scrolls sideways.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from launch.report.data import Group
from launch.report.plots import SMOOTHING

e = html.escape

STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 0 auto; padding: 1.5em 2em; max-width: 1800px; color: #222; }
h1 { margin-top: 0; } h2 { margin-top: 1.6em; border-bottom: 1px solid #e4e4e4; padding-bottom: 0.2em; }
p.note { color: #555; font-size: 0.92em; max-width: 70em; }
.scroll { max-width: 100%; overflow-x: auto; margin: 0.8em 0; border: 1px solid #e4e4e4; border-radius: 4px; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border-bottom: 1px solid #eee; padding: 4px 10px; white-space: nowrap; }
th { background: #f6f6f6; position: sticky; top: 0; text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; } td:first-child { text-align: left; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 400px), 1fr)); gap: 14px; }
figure { margin: 0; } figure img { width: 100%; height: auto; display: block; }
.grid.media figure img { image-rendering: pixelated; }
figcaption { font-size: 0.8em; color: #666; overflow-wrap: anywhere; }
"""


def render_html(dirs, groups: list[Group], table, curves, media, out: Path, sweeps, reliable, reliable_plots) -> str:
    runs = sum(len(g.runs) for g in groups)
    sources = ", ".join(e(str(d)) for d in dirs)
    images = [
        f"<h3>{e(run)}</h3><div class='grid media'>{_figures(paths, out, captions=True)}</div>"
        for run, paths in media.items()
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="dlforge report">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dlforge report</title>
<style>{STYLE}</style></head><body>
<h1>dlforge report</h1>
<p>{runs} run{"s" * (runs != 1)} in {len(groups)} config{"s" * (len(groups) != 1)} from {sources}.</p>
<h2>Comparison</h2>
<p class=note>Final values per config, mean ± std over seeds
(all columns in <a href="comparison.csv">comparison.csv</a>).</p>
{comparison_table(table)}
{reliable_section(reliable, reliable_plots, out)}
{sweep_tables(sweeps)}
<h2>Learning curves</h2>
<p class=note>Each line is the mean across a config's seeds, with a band from the lowest to the highest seed.
Noisy metrics are smoothed as W&B does: an exponential moving average (weight {SMOOTHING}) drawn over the raw mean
(faint); evaluations are drawn as they are.</p>
<div class=grid>{_figures(curves, out)}</div>
{"<h2>Samples and reconstructions</h2>" + "".join(images) if images else ""}
</body></html>
"""


def comparison_table(table: list[dict]) -> str:
    keys = list(dict.fromkeys(k for row in table for k in row["metrics"]))[:8]
    head = "".join(f"<th>{e(k)}</th>" for k in ("config", "seeds", *keys))
    body = []
    for row in table:
        cells = [f"<td>{e(str(row['config']))}</td>", f"<td>{row['seeds']}</td>"]
        for k in keys:
            m = row["metrics"].get(k)
            cells.append(f"<td>{m['mean']:.4g} ± {m['std']:.2g}</td>" if m else "<td>-</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(head, body)


def reliable_section(reliable: dict | None, plots: list[Path], out: Path) -> str:
    """IQM and mean with intervals, probability of improvement, and rliable's plots."""
    if reliable is None:
        return ""
    metric, boot = reliable["metric"], reliable["bootstrap"]
    level = f"{int(boot['confidence'] * 100)}%"
    head = "".join(f"<th>{h}</th>" for h in ("config", "task", "seeds", f"IQM [{level} CI]", f"mean [{level} CI]"))
    body = [
        f"<tr><td>{e(c['config'])}</td><td>{e(c['task'])}</td><td>{c['seeds']}</td>"
        f"<td>{_estimate(c['iqm'])}</td><td>{_estimate(c['mean'])}</td></tr>"
        for c in reliable["configs"]
    ]
    pairs_head = "".join(f"<th>{h}</th>" for h in ("config X", "config Y", f"P(X > Y) [{level} CI]"))
    pairs = [
        f"<tr><td>{e(p['x'])}</td><td>{e(p['y'])}</td><td>{_estimate(p)}</td></tr>"
        for p in reliable["probability_of_improvement"]
    ]
    alone = "<p class=note>Only one config per task: nothing to compare.</p>"
    improvement = _table(pairs_head, pairs) if pairs else alone
    return f"""<h2>Reliable statistics: final {e(metric)}</h2>
<p class=note>Per config with at least two seeds, on each run's last {e(metric)} (Agarwal et al. 2021; the
estimates and plots are rliable's): the interquartile mean (the mean of the middle 50% of runs; with fewer than 4
runs it trims nothing and equals the mean) and the mean, each with a {level} stratified-bootstrap confidence
interval ({boot["reps"]} replicates, percentile method). The IQM learning curve carries a run's last evaluation
forward once it stopped. Performance profiles show the fraction of runs scoring above each threshold τ. P(X &gt; Y)
is the probability that a run of X scores higher than a run of Y (ties count half).</p>
{_table(head, body)}
<h3>Probability of improvement</h3>
{improvement}
<div class=grid>{_figures(plots, out)}</div>"""


def sweep_tables(sweeps: list[dict]) -> str:
    """For each sweep folder given: its trials (a packed trial's members each as a trial) with their metric, status
    and error, and each one's point (the values without the seed) with its rank and mean over seeds (results.json)."""
    parts = []
    for sweep in sweeps:
        metric, trials = sweep["metric"], sweep["trials"]
        points = {point["point"]: point for point in sweep.get("points", [])}
        keys = sorted({k for t in trials for k in t["params"]})
        extra = ("point", "point mean") if points else ()
        head = "".join(f"<th>{e(k)}</th>" for k in ("trial", *keys, metric, "step", "status", *extra))
        rows = []
        for t in trials:
            value = t.get(metric)
            status = t["status"] + (f": {t['error']}" if t.get("error") else "")
            cells = [t["trial"], *(json.dumps(t["params"].get(k)) for k in keys)]
            cells += ["-" if value is None else f"{value:.4g}", str(t.get("step", "-")), status]
            if points:
                point = points[t["point"]]
                mean = "-" if point["mean"] is None else f"{point['mean']:.4g} (n={point['n']})"
                cells += [f"{point['point']} #{point['rank']}", mean]
            rows.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
        parts.append(f"<h2>Sweep {e(sweep['sweep'])}: {e(metric)} ({e(sweep['mode'])})</h2>{_table(head, rows)}")
    return "".join(parts)


def _table(head: str, rows: list[str]) -> str:
    return f"<div class=scroll><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _estimate(found: dict) -> str:
    return f"{found['value']:.4g} [{found['low']:.4g}, {found['high']:.4g}]"


def _figures(paths: list[Path], out: Path, captions: bool = False) -> str:
    tiles = []
    for p in paths:
        caption = f"<figcaption>{e(p.stem.split('-', 2)[-1])}</figcaption>" if captions else ""
        tiles.append(f'<figure><img src="{e(p.relative_to(out).as_posix())}" alt="{e(p.stem)}">{caption}</figure>')
    return "".join(tiles)
