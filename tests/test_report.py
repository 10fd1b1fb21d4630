"""`dlforge report`: curves across seeds, the comparison table, media, and an index.html that loads.

The headless-browser check runs when Debian's `chromium` is on PATH and is skipped otherwise;
DLFORGE_TEST_CHROMIUM=1 (set by .ci/run, which installs chromium) makes a missing chromium a failure. It keeps a
screenshot of index.html at 1280 pixels as a test artefact (test-artifacts/, not committed).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from launch.config import TrackingConfig
from launch.report import curve, find_runs, group_runs, write_report
from launch.tracking import LocalTracker

REPO = Path(__file__).resolve().parents[1]


def make_run(root: Path, name: str, *, lr: float, seed: int, curve_points: dict[int, float], image=None) -> Path:
    run_dir = root / name
    tracker = LocalTracker(run_dir, TrackingConfig(wandb="disabled"))
    (run_dir / "config.yaml").write_text(
        yaml.safe_dump(
            {"kind": "vae", "tracking": {"wandb": "offline"}, "lr": lr, "seed": seed, "network": {"hidden": [8]}}
        )
    )
    for step, value in curve_points.items():
        tracker.log({"eval/score": value, "losses/loss": 1 - value}, step)
    if image is not None:
        tracker.image("samples", image, step=max(curve_points))
        tracker.image("samples", np.zeros((8, 8)), step=0)  # older: the report shows the newest
    tracker.summary({"eval/score": list(curve_points.values())[-1]})
    tracker.close()
    return run_dir


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    rng = np.random.default_rng(0)
    make_run(root, "a0", lr=0.1, seed=0, curve_points={10: 0.2, 20: 0.4, 30: 0.6}, image=rng.random((3, 16, 16)))
    make_run(root, "a1", lr=0.1, seed=1, curve_points={10: 0.4, 20: 0.6, 30: 1.0})
    make_run(root, "b0", lr=0.01, seed=0, curve_points={10: 0.1, 20: 0.1}, image=rng.random((28, 56)))
    return root


def test_curve_is_the_mean_across_seeds_with_a_min_max_band(runs):
    groups = group_runs(find_runs([runs]))
    assert sorted(g.label for g in groups) == ["lr=0.01", "lr=0.1"]
    a = next(g for g in groups if g.label == "lr=0.1")
    steps, mean, low, high = curve(a.runs, "eval/score")
    assert steps.tolist() == [10, 20, 30]
    np.testing.assert_allclose(mean, [0.3, 0.5, 0.8])
    np.testing.assert_allclose(low, [0.2, 0.4, 0.6])
    np.testing.assert_allclose(high, [0.4, 0.6, 1.0])


def test_a_seed_that_stopped_early_only_counts_where_it_ran(tmp_path):
    make_run(tmp_path, "s0", lr=0.1, seed=0, curve_points={0: 0.0, 100: 1.0})
    make_run(tmp_path, "s1", lr=0.1, seed=1, curve_points={0: 1.0, 50: 0.0})  # stopped at 50 (ASHA)
    (group,) = group_runs(find_runs([tmp_path]))
    steps, mean, low, high = curve(group.runs, "eval/score")
    assert steps.tolist() == [0, 50, 100]
    np.testing.assert_allclose(mean, [0.5, 0.25, 1.0])  # at 50: (0.5 + 0.0) / 2; at 100 only s0
    np.testing.assert_allclose(low, [0.0, 0.0, 1.0])


def test_report_writes_curves_table_media_and_index(runs, tmp_path):
    out = tmp_path / "report"
    index = write_report([runs], out)
    assert index == out / "index.html"
    curves = sorted(p.name for p in (out / "curves").glob("*.png"))
    assert curves == ["eval_score.png", "losses_loss.png"]
    media = sorted(p.name for p in (out / "media").glob("*.png"))
    assert media == ["000-a0-samples.png", "002-b0-samples.png"]
    # The newest sample grid was copied (the step-0 one is all zeros).
    import matplotlib.image

    assert matplotlib.image.imread(out / "media" / "000-a0-samples.png")[..., :3].max() > 0

    report = json.loads((out / "report.json").read_text())
    a = next(row for row in report["comparison"] if row["config"] == "lr=0.1")
    assert a["seeds"] == 2
    assert a["metrics"]["eval/score"]["mean"] == pytest.approx(0.8)
    assert a["metrics"]["eval/score"]["min"] == pytest.approx(0.6)
    csv_text = (out / "comparison.csv").read_text()
    assert csv_text.splitlines()[0].startswith("config,kind,seeds,eval/score mean")

    page = index.read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert len(sources) == 4 and all((out / s).is_file() for s in sources)  # relative: readable from disk
    assert "lr=0.1" in page and "0.8 ±" in page

    # Writing again into the same folder replaces the old report.
    write_report([runs], out)
    assert sorted(p.name for p in (out / "media").glob("*.png")) == media


def test_report_bad_input_is_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_report = tmp_path / "mine"
    not_a_report.mkdir()
    (not_a_report / "notes.txt").write_text("keep me")
    make_run(tmp_path / "runs", "r", lr=0.1, seed=0, curve_points={1: 0.0})
    cases = [
        ([str(tmp_path / "nope")], "no such folder"),
        ([str(empty)], "holds no dlforge runs"),
        ([str(tmp_path / "runs"), "--out", str(not_a_report)], "is not a dlforge report"),
    ]
    for argv, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "launch.cli", "report", *argv], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (not_a_report / "notes.txt").read_text() == "keep me"


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("DLFORGE_TEST_CHROMIUM") == "1":
            pytest.fail("DLFORGE_TEST_CHROMIUM=1 but chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium); DLFORGE_TEST_CHROMIUM=1 requires it")
    return found


PAGE_CHECK = """<script>
window.pageErrors = [];
const source = t => (t && t.getAttribute && (t.getAttribute('src') || t.getAttribute('href'))) || '?';
window.addEventListener('error', e => window.pageErrors.push(e.message || 'failed to load ' + source(e.target)), true);
const consoleError = console.error;
console.error = (...args) => { window.pageErrors.push(args.join(' ')); consoleError.apply(console, args); };
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  const boxes = [...document.querySelectorAll('.scroll')];
  const out = document.createElement('pre'); out.id = 'page-check';
  out.textContent = JSON.stringify({
    total: images.length, broken: broken, errors: window.pageErrors,
    page_width: document.documentElement.scrollWidth, window_width: window.innerWidth,
    boxes_scrolling: boxes.filter(b => b.scrollWidth > b.clientWidth).length,
  });
  document.body.appendChild(out);
});
</script>"""
WINDOW = "--window-size=1280,2400"  # the width the report is laid out for
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def check_in_chromium(chromium: str, page: Path) -> dict:
    """Open `page` from disk in headless Chromium at 1280 pixels wide: images, errors, widths."""
    probe = page.with_name(f"probe-{page.name}")  # beside it, so relative links resolve the same
    probe.write_text(page.read_text().replace("<head>", "<head>" + PAGE_CHECK, 1))
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            WINDOW,
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    probe.unlink()
    found = re.search(r'<pre id="page-check">(.*?)</pre>', done.stdout)
    assert found, f"chromium gave no result: {done.stderr[-500:]}"
    return json.loads(found[1].replace("&quot;", '"'))


def screenshot(chromium: str, page: Path, name: str) -> Path:
    """A 1280-pixel-wide screenshot kept as a test artefact (DLFORGE_TEST_ARTIFACTS, default test-artifacts/)."""
    folder = Path(os.environ.get("DLFORGE_TEST_ARTIFACTS", REPO / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    subprocess.run(
        [chromium, *HEADLESS, "--hide-scrollbars", WINDOW, f"--screenshot={path}", page.as_uri()],
        capture_output=True,
        timeout=60,
        check=True,
    )  # fmt: skip
    return path


def test_index_html_loads_in_headless_chromium_at_1280_pixels(runs, tmp_path):
    chromium = _chromium()
    for seed, final in enumerate([400.0, 480.0, 500.0]):  # agent runs: the reliable-statistics section too
        make_agent_run(runs, f"agent-{seed}", seed=seed, final=final)
    make_agent_run(runs, "agent-wide", seed=0, final=300.0, notes="a very long note " * 30)  # a wide table
    index = write_report([runs], tmp_path / "report")
    page = index.read_text()
    result = check_in_chromium(chromium, index)
    assert result["total"] == page.count("<img ") == 9  # 4 curves, 3 reliable-statistics plots, 2 media
    assert result["broken"] == [] and result["errors"] == []
    assert result["page_width"] <= result["window_width"] == 1280  # the page never scrolls sideways...
    assert result["boxes_scrolling"] >= 1  # ...the wide table scrolls in its own box
    shot = screenshot(chromium, index, "report-index-1280.png")
    assert shot.stat().st_size > 20_000
    # The check can fail: a missing image is reported, and so is its load error.
    (tmp_path / "report" / "curves" / "losses_loss.png").unlink()
    result = check_in_chromium(chromium, index)
    assert result["broken"] == ["curves/losses_loss.png"]
    assert result["errors"] == ["failed to load curves/losses_loss.png"]


def make_agent_run(root: Path, name: str, *, seed: int, final: float, **extra) -> Path:
    run_dir = root / name
    tracker = LocalTracker(run_dir, TrackingConfig(wandb="disabled"))
    config = {"kind": "dqn", "env_id": "CartPole-v1", "seed": seed, **extra}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    rng = np.random.default_rng(seed)
    for step in range(100, 2001, 100):
        tracker.log({"charts/episodic_return": float(rng.normal(final * step / 2000, 30))}, step)
        if step % 500 == 0:
            tracker.log({"eval/mean_return": final * step / 2000}, step)
    tracker.close()
    return run_dir


def test_a_sweep_folder_reports_its_trials_with_status_and_error(tmp_path):
    sweep = tmp_path / "sweeps" / "s"
    make_run(sweep / "trials", "s-000", lr=0.1, seed=0, curve_points={10: 0.5})
    make_run(sweep / "trials", "s-001", lr=0.01, seed=0, curve_points={10: 0.2})
    trials = [
        {"trial": "s-000", "status": "done", "eval/score": 0.5, "step": 10, "params": {"lr": 0.1, "seed": 0}},
        {
            "trial": "s-001",
            "status": "error",
            "eval/score": None,
            "step": 10,
            "params": {"lr": 0.01, "seed": 0},
            "error": "RuntimeError: boom",
        },
    ]
    points = [
        {"point": "p00", "rank": 1, "mean": 0.5, "n": 1, "params": {"lr": 0.1}},
        {"point": "p01", "rank": 2, "mean": None, "n": 0, "params": {"lr": 0.01}},
    ]
    trials[0]["point"], trials[1]["point"] = "p00", "p01"
    (sweep / "results.json").write_text(
        json.dumps({"sweep": "s", "metric": "eval/score", "mode": "max", "trials": trials, "points": points})
    )
    page = write_report([sweep], sweep / "report").read_text()
    assert "<h2>Sweep s: eval/score (max)</h2>" in page
    assert "error: RuntimeError: boom" in page and "<td>0.5</td>" in page
    assert "<td>p00 #1</td><td>0.5 (n=1)</td>" in page  # each trial's point, ranked by its mean over seeds
    assert (sweep / "report" / "curves" / "eval_score.png").exists()
