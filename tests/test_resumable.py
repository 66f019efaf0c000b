"""pni.resumable: batches kept as they finish, so a stopped computation resumes mid-way with
the results of an uninterrupted one (an evaluation's partial file, ZOO's own batches)."""
from __future__ import annotations

import importlib

import pytest
import torch

import pni
from pni import resumable
from pni.resumable import BatchRecord, batch_record, resumable_batches

zoo_module = importlib.import_module("pni.attacks.zoo")  # (pni.attacks.zoo is the attack function)


@pytest.fixture(autouse=True)
def save_every_batch(monkeypatch):
    monkeypatch.setattr(resumable, "SAVE_EVERY_S", 0.0)


def _draws(i: int) -> torch.Tensor:  # a batch that draws from the one random stream
    return torch.rand(3) + i


def test_outside_a_record_it_is_a_loop_and_reports_each_batch():
    torch.manual_seed(1)
    expected = [_draws(i) for i in range(4)]
    torch.manual_seed(1)
    seen = []
    assert all(torch.equal(a, b) for a, b in zip(resumable_batches(4, _draws, sizes=[1, 2, 3, 4],
                                                                   report=seen.append), expected))
    assert seen == [1, 2, 3, 4]


def test_a_stopped_loop_resumes_at_its_next_batch_with_the_same_random_draws():
    torch.manual_seed(1)
    whole = [_draws(i) for i in range(5)]
    batches, saves = {}, []
    record = BatchRecord(batches, lambda: saves.append(1))
    calls, stop = [], [3]

    def stopped_at_three(i: int) -> torch.Tensor:
        calls.append(i)
        if i in stop:
            stop.clear()
            raise KeyboardInterrupt
        return _draws(i)

    torch.manual_seed(1)
    with batch_record(record, "attack"), pytest.raises(KeyboardInterrupt):
        resumable_batches(5, stopped_at_three)
    assert saves and [len(v) for v in batches.values()] == [3]  # batches 0-2 kept, saved at the stop
    torch.manual_seed(123)  # a later process starts from another random state
    calls.clear()
    with batch_record(record, "attack"):
        resumed = resumable_batches(5, stopped_at_three)
    assert calls == [3, 4]  # only the unfinished batches run
    assert all(torch.equal(a, b) for a, b in zip(resumed, whole))  # same draws as one uninterrupted loop


def test_nested_loops_report_fractions_of_their_batch_and_drop_their_record_when_it_finishes():
    batches: dict = {}
    record = BatchRecord(batches, lambda: None)
    seen: list[float] = []

    def outer(i: int) -> int:
        return sum(resumable_batches(4, lambda j: j))  # e.g. ZOO's batches inside an evaluation batch

    with batch_record(record, "run"):
        assert resumable_batches(2, outer, sizes=[8, 4], report=seen.append) == [6, 6]
    assert seen == [2, 2, 2, 2, 1, 1, 1, 1]  # each outer batch's share in quarters
    assert list(batches) == ["run/0"]  # the inner loops' records are gone: their results live in run/0


def test_a_zoo_stopped_mid_attack_resumes_at_its_next_batch_with_an_uninterrupted_runs_results(
        tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "A-a", init_alpha=0.5).eval()  # per-query noise
    data = pni.load_dataset("mnist-sample", "test").subset(12)
    kw = dict(trials=1, noise="on", eps=0.3, votes=3, worst_case=False,
              attack_options={"zoo": {"steps": 3, "coords": 8, "batch_size": 2, "eot": 2}})
    whole = pni.evaluate(model, data, ["clean", "eot-zoo"], **kw)
    real, calls = zoo_module._zoo_batch, []

    def stopped_at(k: int):
        def batch(*args, **kwargs):
            calls.append(1)
            if len(calls) == k:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return batch

    partial = tmp_path / "partial.pt"
    monkeypatch.setattr(zoo_module, "_zoo_batch", stopped_at(4))  # killed in ZOO's fourth batch of six
    with pytest.raises(KeyboardInterrupt):
        pni.evaluate(model, data, ["clean", "eot-zoo"], resume_file=partial, **kw)
    calls.clear()
    monkeypatch.setattr(zoo_module, "_zoo_batch", stopped_at(0))
    resumed = pni.evaluate(model, data, ["clean", "eot-zoo"], resume_file=partial, **kw)
    assert len(calls) == 6 - 3  # ZOO's three finished batches were kept
    assert torch.equal(resumed.fractions["with_noise"]["eot-zoo"], whole.fractions["with_noise"]["eot-zoo"])
    assert torch.equal(resumed.correct["with_noise"]["eot-zoo"], whole.correct["with_noise"]["eot-zoo"])
    assert torch.equal(resumed.extras["with_noise"]["eot-zoo"]["l2"].nan_to_num(-1),
                       whole.extras["with_noise"]["eot-zoo"]["l2"].nan_to_num(-1))



def test_a_partial_file_records_the_share_of_the_evaluation_it_holds_and_its_time(tmp_path, attack_calls):
    from pni.evaluation.resume import partial_progress

    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.5).eval()
    data = pni.load_dataset("mnist-sample", "test").subset(8)
    partial = tmp_path / "partial.pt"
    attack_calls.kill_at(3)  # clean and FGSM done (1 and 1 passes per image), PGD-5 (5) not
    with pytest.raises(KeyboardInterrupt):
        pni.evaluate(model, data, ["clean", "fgsm", "pgd"], trials=1, noise="on", eps=0.1, steps=5,
                     resume_file=partial, worst_case=False)
    share, seconds = partial_progress(partial)
    assert share == pytest.approx((1 + 1) / (1 + 1 + 5)) and seconds > 0


def test_the_noise_off_half_counts_one_draw_per_step_in_the_recorded_share(tmp_path, attack_calls):
    from pni.evaluation.resume import partial_progress

    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "W", init_alpha=0.5).eval()
    data = pni.load_dataset("mnist-sample", "test").subset(8)
    partial = tmp_path / "partial.pt"
    attack_calls.kill_at(3)  # noise on done (clean 1, EOT-PGD 5 steps x 4 draws = 20 passes per image)
    with pytest.raises(KeyboardInterrupt):
        pni.evaluate(model, data, ["clean", "eot-pgd"], trials=1, eps=0.1, steps=5, votes=1,
                     attack_options={"eot": 4}, resume_file=partial, worst_case=False)
    share, _ = partial_progress(partial)
    # noise off: the model is deterministic, EOT-PGD one draw per step (5): not half of the work left
    assert share == pytest.approx((1 + 20) / ((1 + 20) + (1 + 5)))


def test_reused_batches_are_reported_as_replayed_and_computed_ones_as_done_now():
    from pni.resumable import replaying

    batches: dict = {}
    record = BatchRecord(batches, lambda: None)
    with batch_record(record, "attack"):
        resumable_batches(2, lambda i: torch.tensor(i))   # a first run finishes two of four
    del batches["attack/0"][2:]
    reports: list[bool] = []
    with batch_record(record, "attack"):
        resumable_batches(4, lambda i: torch.tensor(i), sizes=[1.0] * 4,
                          report=lambda amount: reports.append(replaying()))
    assert reports == [True, True, False, False] and not replaying()


def test_a_chain_stopped_mid_way_resumes_at_its_next_step_from_the_state_it_left():
    def advance(i: int, state: dict) -> dict:
        state["x"] += torch.rand(2) * (i + 1)   # in place, from the one random stream
        return state

    torch.manual_seed(3)
    whole = resumable.resumable_chain(5, advance, {"x": torch.zeros(2)})["x"]
    batches, steps = {}, []

    def stopping(i: int, state: dict) -> dict:
        steps.append(i)
        if i == 3 and len(steps) == 4:
            raise KeyboardInterrupt
        return advance(i, state)

    record = BatchRecord(batches, lambda: None)
    torch.manual_seed(3)
    with pytest.raises(KeyboardInterrupt), batch_record(record, "run"):
        resumable.resumable_chain(5, stopping, {"x": torch.zeros(2)})
    assert batches["run/0"][0]["result"]["done"] == 3 and len(batches["run/0"]) == 1  # only the latest state
    torch.manual_seed(99)   # another stream meanwhile: the record's random state wins
    steps.clear()
    with batch_record(record, "run"):
        resumed = resumable.resumable_chain(5, stopping, {"x": torch.zeros(2)})["x"]
    assert steps == [3, 4] and torch.equal(resumed, whole)


def test_a_zoo_stopped_mid_batch_resumes_at_its_next_iteration_with_an_uninterrupted_runs_results(tmp_path):
    """An EOT-ZOO batch of a noisy ResNet-20 runs an hour on a CPU core: its iterations are kept."""
    torch.manual_seed(0)
    model = pni.inject(pni.create_model("lenet5"), "A-a", init_alpha=0.5).eval()
    data = pni.load_dataset("mnist-sample", "test").subset(4)
    kw = dict(trials=1, noise="on", eps=0.3, votes=3, worst_case=False,
              attack_options={"zoo": {"steps": 6, "coords": 8, "batch_size": 4, "eot": 2}})
    calls: list[int] = []
    stop_at = 0

    def counting(module, args):
        calls.append(len(args[0]))
        if len(calls) == stop_at:
            raise KeyboardInterrupt

    def query_images() -> int:   # the images ZOO's query passes scored (2 x 8 + 1 points each)
        return sum(n for n in calls if n % (2 * 8 + 1) == 0 and n > 4)

    hook = model.register_forward_pre_hook(counting)
    whole = pni.evaluate(model, data, ["clean", "eot-zoo"], **kw)
    whole_queries = query_images()
    calls.clear()
    stop_at = 15   # clean and its votes, ZOO's checks and first pass (10), then 2 per iteration: the third
    partial = tmp_path / "partial.pt"
    with pytest.raises(KeyboardInterrupt):
        pni.evaluate(model, data, ["clean", "eot-zoo"], resume_file=partial, **kw)
    queries = query_images()
    calls.clear()
    stop_at = 0
    resumed = pni.evaluate(model, data, ["clean", "eot-zoo"], resume_file=partial, **kw)
    hook.remove()
    kept = 2 * 2 * 4 * 17   # iterations 1 and 2 (2 draws of 4 images x 17 points each), then killed in 3
    assert queries == kept + 4 * 17 and query_images() == whole_queries - kept
    for key in ("fractions", "correct"):
        assert torch.equal(getattr(resumed, key)["with_noise"]["eot-zoo"], getattr(whole, key)["with_noise"]["eot-zoo"])
    assert torch.equal(resumed.extras["with_noise"]["eot-zoo"]["l2"], whole.extras["with_noise"]["eot-zoo"]["l2"])
