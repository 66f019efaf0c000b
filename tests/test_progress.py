"""One progress style (issue 24, item 6): tqdm on a terminal; in a log file one line every few
percent with the time left, at most every few seconds (``pni.progress``), in training, ``pni
eval`` and certify; the audit's estimate counts only the items it runs."""
from __future__ import annotations

import io

import pytest

import pni
from pni import progress
from pni.auditing import AuditSettings
from pni.progress import LogProgress, progress_bar
from pni.evaluation.estimate import audit_seconds


def test_log_lines_every_few_percent_with_the_time_left() -> None:
    out = io.StringIO()
    bar = LogProgress(200, "certify", "sample", stream=out, min_seconds=0)
    for _ in range(200):
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 20                         # 5%, 10%, ..., 95% and the closing line
    assert lines[0].startswith("certify: 5% (10/200 sample)") and "left" in lines[0]
    assert lines[-1].startswith("certify: done, 200 sample in")
    quiet = io.StringIO()                           # a fast loop prints nothing at all
    with LogProgress(10_000, "eval", stream=quiet) as fast:
        for _ in range(10_000):
            fast.update(1)
    assert quiet.getvalue() == ""


def test_terminals_get_tqdm_and_logs_get_lines() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = progress_bar(10, "x", stream=Tty())
    assert hasattr(bar, "set_postfix") and not isinstance(bar, LogProgress)    # a tqdm bar
    bar.close()
    assert isinstance(progress_bar(10, "x", stream=io.StringIO()), LogProgress)
    assert not isinstance(progress_bar(10, "x", enabled=False), LogProgress)


def test_eval_and_certify_report_progress_in_a_log_without_flooding(noisy_model, monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress, "MIN_SECONDS", 0.0)
    data = pni.load_dataset("mnist-sample", "test").subset(20)
    pni.evaluate(noisy_model, data, ("clean", "fgsm"), trials=2, eps=0.1, progress=True)
    lines = capsys.readouterr().err.splitlines()
    # the work in forward+backward passes: clean 1 and FGSM 1 per image, 20 images, 2 trials, noise on and off
    assert any(line.startswith("eval: 50% (80/160 pass)") and "left" in line for line in lines)
    assert 2 <= len(lines) <= 21
    pni.certify(noisy_model, data.subset(4), 0.25, n0=20, n=200, batch_size=50, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("certify")]
    assert 2 <= len(lines) <= 21 and "left" in lines[0] and lines[-1].startswith("certify: done")


def test_the_audit_estimate_counts_only_the_items_it_runs() -> None:
    full = AuditSettings(eps=0.3)
    one = AuditSettings(eps=0.3, items=(1,))
    unbounded = AuditSettings(eps=0.3, items=(3,))
    assert audit_seconds(one, 100, 1.0) == pytest.approx(100 * 3 * 20)           # PGD, FGSM, transfer passes
    assert audit_seconds(unbounded, 100, 1.0) == pytest.approx(100 * 100)         # 100 unbounded steps
    with_surrogate = audit_seconds(AuditSettings(eps=0.3, items=(2,)), 100, 1.0)
    assert with_surrogate - audit_seconds(AuditSettings(eps=0.3, items=(2,)), 100, 1.0, False) == 10000 * 5
    assert audit_seconds(full, 100, 1.0) > audit_seconds(one, 100, 1.0) + audit_seconds(unbounded, 100, 1.0)


def test_eval_progress_counts_batches_weighted_by_passes_and_drops_what_the_cascade_spares(
        noisy_model, monkeypatch) -> None:
    import pni.evaluation.evaluator as evaluator

    bars = []

    class Recording(LogProgress):
        def __init__(self, total, *args, **kwargs) -> None:
            super().__init__(total, *args, stream=io.StringIO(), **kwargs)
            self.first_total, self.updates = total, []
            bars.append(self)

        def update(self, k: int = 1) -> None:
            self.updates.append(k)
            super().update(k)

    monkeypatch.setattr(evaluator, "progress_bar", lambda total, *a, **k: Recording(total, *a[:2]))
    data = pni.load_dataset("mnist-sample", "test").subset(20)
    result = pni.evaluate(noisy_model, data, ("clean", "pgd", "fgsm"), trials=1, noise="on", eps=0.3, steps=5,
                          batch_size=5, cascade=("pgd", "fgsm"), progress=True)
    robust = {name: int((f[0] > 0).sum()) for name, f in result.fractions["with_noise"].items()}
    bar = bars[0]
    assert bar.first_total == 20 * (1 + 5 + 1)               # clean, PGD-5 and FGSM passes per image
    assert 0 < robust["clean"] < 20 and bar.updates[:4] == [5, 5, 5, 5]   # clean: per batch of 5
    assert bar.updates[4] == 5 * min(5, robust["clean"])     # PGD on the images still robust, 5 passes each
    assert bar.n == bar.total == 20 + 5 * robust["clean"] + robust["pgd"]  # the spared ones left the total


def test_work_credited_from_a_resume_shows_as_done_but_not_in_the_pace(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    bar = LogProgress(100, "eval", "pass", stream=out, min_seconds=0)
    progress.credit(bar, 50)            # half of it done before the stop: reused at once
    clock[0] = 10.0
    bar.update(10)                      # 10 passes in 10 s now: 40 left take about 40 s
    assert out.getvalue().splitlines()[-1] == "eval: 60% (60/100 pass), 10 s elapsed, about 40 s left"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    live = progress_bar(100, "eval", stream=Tty())
    progress.credit(live, 50)
    assert (live.n, live.initial) == (50, 50)   # tqdm's rate counts from its initial
    live.close()
