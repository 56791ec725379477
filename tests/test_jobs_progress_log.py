"""Progress when stderr is not a terminal (nohup, a pipe, a log file): plain lines every
$LATENTPEDIA_PROGRESS_SECONDS with stage, units done/total, rate and ETA, for builds (a real
`latentpedia build` piped), training and explain runs; and the readings every listener gets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from latentpedia.dashboards.progress import ProgressMeter, format_seconds, progress_listener
from latentpedia.train.progress import TrainProgress
from tests.test_build_pipeline import corpus_file, tiny_dir  # noqa: F401 (fixtures)

LINE = re.compile(r"^progress: (?P<stage>.+?) (?P<done>[\d,]+)/(?P<total>[\d,]+) (?P<unit>\w+) \((?P<pct>[\d.]+)%\), "
                  r"(?P<rate>[\d,]+|-) \w+/s, ETA (?P<eta>\S+)$")  # fmt: skip


def parse(stderr: str) -> list[dict]:
    found = [m.groupdict() for line in stderr.splitlines() if (m := LINE.match(line))]
    for row in found:
        row["done"], row["total"] = int(row["done"].replace(",", "")), int(row["total"].replace(",", ""))
    return found


def test_a_piped_build_prints_plain_progress_lines(tmp_path, tiny_dir, corpus_file):
    env = {**os.environ, "LATENTPEDIA_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "LATENTPEDIA_PROGRESS_SECONDS": "0"}
    args = ["build", "--model", str(tiny_dir), "--layers", "1", "--corpus", str(corpus_file), "--tokens", "4000",
            "--window", "32", "--batch-size", "4", "--db", f"sqlite:///{tmp_path}/a.db"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "latentpedia.cli", *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = parse(proc.stderr)
    assert len(lines) >= 10, proc.stderr
    assert {row["stage"] for row in lines} == {"forward pass"} and {row["unit"] for row in lines} == {"tokens"}
    done = [row["done"] for row in lines]
    assert done == sorted(done) and done[-1] == lines[-1]["total"] and lines[-1]["pct"] == "100.0"
    moving = [row for row in lines if row["done"] > 0]  # the first line may be the start: 0 done, no rate yet
    assert moving and all(row["rate"] != "-" and row["eta"] != "-" for row in moving)
    assert "\x1b[" not in proc.stderr  # no terminal escapes in a log file


def test_lines_come_every_interval_not_every_batch(monkeypatch, capsys):
    monkeypatch.setenv("LATENTPEDIA_PROGRESS_SECONDS", "3600")
    with ProgressMeter("forward pass", 100) as meter:
        for _ in range(10):
            meter.advance(10)
    lines = parse(capsys.readouterr().err)
    assert [row["done"] for row in lines] == [100]  # only the closing line within the hour


def test_listeners_get_readings_and_resumed_units_are_not_in_the_rate(monkeypatch, capsys):
    monkeypatch.setenv("LATENTPEDIA_PROGRESS_SECONDS", "0")
    readings = []
    with progress_listener(readings.append), ProgressMeter("forward pass", 100, unit="tokens", enabled=False) as meter:
        meter.advance(40, resumed=True)
        meter.advance(10)
    assert capsys.readouterr().err == ""  # disabled: nothing printed, listeners still told
    assert readings[0].done == 40 and readings[0].rate is None and readings[0].eta_seconds is None
    last = readings[-1]
    assert last.done == 50 and last.fraction == 0.5 and last.rate > 0
    assert last.eta_seconds == (100 - 50) / last.rate


def test_training_prints_tokens_rate_and_eta(monkeypatch, capsys):
    monkeypatch.setenv("LATENTPEDIA_PROGRESS_SECONDS", "0")
    metrics = {"loss": 1.0, "l0": 4.0, "ev": 0.5, "dead": 0.0}
    with TrainProgress(["a", "b"], 10, batch_size=64) as bar:
        for step in range(4, 11):  # resumed at step 3
            bar.step_done()
            for name in ("a", "b"):
                bar.update(name, step, metrics)
    lines = parse(capsys.readouterr().err)
    assert lines and lines[0]["stage"] == "training a, b"
    assert (lines[0]["done"], lines[0]["rate"]) == (3 * 64, "-")  # the resumed steps: not in the rate
    assert lines[1]["done"] == 4 * 64 and lines[1]["rate"] != "-"
    assert lines[-1]["done"] == lines[-1]["total"] == 640


def test_explain_runs_print_latents_done(monkeypatch, capsys):
    from latentpedia.interp.pipeline import _progress

    monkeypatch.setenv("LATENTPEDIA_PROGRESS_SECONDS", "0")
    with _progress(True, "explain 1-mlp", 30) as progress:
        for _ in range(3):
            progress.advance(10)
    lines = parse(capsys.readouterr().err)
    assert [row["done"] for row in lines][-1] == 30 and lines[0]["unit"] == "latents"


def test_seconds_in_words():
    assert [format_seconds(s) for s in (0, 4.4, 95, 3725)] == ["0s", "4s", "1m35s", "1h02m05s"]
