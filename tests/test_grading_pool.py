"""The persistent grading pool (`IsolatedPool`): workers started once and reused across
submissions, a timeout or a crash costing one input and one worker, submissions running while the
caller works on, nothing left behind by `close`. The functions the workers run are real ones
defined here (module level, so the workers can import them)."""
from __future__ import annotations

import os
import threading
import time

import pytest

from webinstruct.evaluation.grading.pool import IsolatedPool, Outcome
from webinstruct.core.procs import pid_alive


def _pid(_: int) -> int:
    return os.getpid()


def _sleep_then(x: float) -> float:
    time.sleep(x)
    return x


def _crash_on(x: int) -> int:
    if x < 0:
        os._exit(3)
    return x * 10


def _gone(pid: int) -> bool:
    return not pid_alive(pid)


def test_the_same_workers_serve_every_submission():
    with IsolatedPool(_pid, workers=2, timeout=30) as pool:
        started = pool.pids
        assert len(started) == 2 and len(set(started)) == 2
        seen = set()
        for _ in range(4):
            outcomes = pool.map([(k,) for k in range(5)])
            assert all(o.status == "ok" for o in outcomes)
            seen |= {o.value for o in outcomes}
        assert seen <= set(started) and pool.pids == started


def test_a_timeout_costs_one_input_and_later_submissions_still_work():
    with IsolatedPool(_sleep_then, workers=1, timeout=1.0) as pool:
        first = pool.pids
        outcomes = pool.map([(0,), (30,), (0.01,)])
        assert [o.status for o in outcomes] == ["ok", "timeout", "ok"]
        assert outcomes[1].detail == "over 1s"
        assert pool.pids != first  # the stuck worker was replaced...
        assert pool.map([(0,), (0,)]) == [Outcome("ok", 0), Outcome("ok", 0)]  # ...and the pool goes on
        # A submission's own limit overrides the pool's.
        assert [o.status for o in pool.map([(0.5,)], timeout=0.2)] == ["timeout"]
        assert all(_gone(pid) for pid in first)


def test_a_crash_costs_one_input():
    with IsolatedPool(_crash_on, workers=2, timeout=30) as pool:
        outcomes = pool.map([(1,), (-1,), (2,), (3,)])
        assert [o.status for o in outcomes] == ["ok", "crashed", "ok", "ok"]
        assert [o.value for o in outcomes if o.status == "ok"] == [10, 20, 30]
        assert pool.map([(4,)]) == [Outcome("ok", 40)]


def test_submissions_from_threads_keep_their_own_order():
    with IsolatedPool(_crash_on, workers=2, timeout=30) as pool:
        got: dict[int, list] = {}

        def ask(t: int) -> None:
            got[t] = pool.map([(t * 100 + k,) for k in range(20)])

        threads = [threading.Thread(target=ask, args=(t,)) for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert {t: [o.value for o in v] for t, v in got.items()} == \
            {t: [(t * 100 + k) * 10 for k in range(20)] for t in range(3)}


def test_grading_overlaps_the_callers_work():
    # The caller's "generation" is a sleep (the caller is what is faked); grading runs in the real
    # pool. Four chunks of 0.3 s generation + 0.3 s grading: 2.4 s one after the other, about
    # 1.5 s when chunk k is graded while chunk k+1 generates.
    gen, grade, chunks = 0.3, 0.3, 4
    with IsolatedPool(_sleep_then, workers=2, timeout=30) as pool:
        pool.map([(0,), (0,)])  # both workers ready: imports are not part of the comparison
        start = time.monotonic()
        for _ in range(chunks):
            time.sleep(gen)
            pool.map([(grade,), (grade,)])
        sequential = time.monotonic() - start

        start = time.monotonic()
        previous = None
        for _ in range(chunks):
            time.sleep(gen)
            if previous is not None:
                assert all(o.status == "ok" for o in previous.result())
            previous = pool.submit([(grade,), (grade,)])
        assert all(o.status == "ok" for o in previous.result())
        overlapped = time.monotonic() - start
    assert sequential >= chunks * (gen + grade)
    assert overlapped < sequential - 0.5, (overlapped, sequential)


def test_close_leaves_no_processes():
    pool = IsolatedPool(_sleep_then, workers=2, timeout=60)
    pids = pool.pids
    running = pool.submit([(0.3,), (0.3,), (0.3,)])
    pool.close()  # lets submitted work finish
    assert [o.status for o in running.result(timeout=0)] == ["ok"] * 3
    assert all(_gone(pid) for pid in pids) and not pool._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit([(0,)])

    pool = IsolatedPool(_sleep_then, workers=1, timeout=60)
    pids = pool.pids
    stuck = pool.submit([(30,), (0,)])
    time.sleep(0.5)
    start = time.monotonic()
    pool.close(cancel=True)  # answers "error" for the rest and kills the busy worker
    assert time.monotonic() - start < 10
    assert [o.status for o in stuck.result(timeout=0)] == ["error", "error"]
    assert all(_gone(pid) for pid in pids)


def test_a_pool_whose_workers_cannot_start_answers_errors():
    with IsolatedPool(_pid, workers=1, timeout=10, preload=("no_such_module_here",)) as pool:
        outcomes = pool.map([(1,), (2,)])
        assert [o.status for o in outcomes] == ["error", "error"]
        assert "workers failed to start" in outcomes[0].detail and "no_such_module_here" in outcomes[0].detail
        later = pool.submit([(3,)])
        assert later.done() and later.result()[0].status == "error"


def test_a_lazy_pool_starts_its_workers_with_the_first_submission():
    with IsolatedPool(_pid, workers=2, timeout=30, lazy=True) as pool:
        assert pool.pids == []
        served = {o.value for o in pool.map([(k,) for k in range(6)])}
        started = pool.pids
        assert len(started) == 2 and served <= set(started)
        pool.map([(1,)])
        assert pool.pids == started


def test_the_evaluation_grading_pool():
    # Both graders through one persistent pool agree with a one-off grading; answers plain checks
    # decide start no worker, the first symbolic one starts them, later calls reuse them.
    from webinstruct.evaluation.grading import GRADERS, grade, grade_all, grading_pool
    from webinstruct.evaluation.items import Item

    def in_process(pairs):
        return [{g: grade(item, output, g, "mammoth2") for g in GRADERS} for item, output in pairs]

    easy = [(Item("gsm8k", str(k), "q", str(k), "number"), f"So the answer is {k}") for k in range(5)]
    hard = [(Item("math", str(k), "q", f"{k}\\sqrt{{2}}", "math"), f"\\boxed{{\\sqrt{{{2 * k * k}}}}}")
            for k in range(1, 5)]
    with grading_pool(workers=2, timeout=20.0) as pool:
        assert grade_all(easy, "mammoth2", pool=pool) == in_process(easy)
        assert pool.pids == []
        verdicts = grade_all(hard, "mammoth2", pool=pool)
        started = pool.pids
        assert len(started) == 2
        assert all(v["robust"].correct and v["robust"].note == "symbolic" for v in verdicts)
        assert grade_all(hard + easy, "mammoth2", pool=pool) == in_process(hard + easy)
        assert pool.pids == started
    assert all(_gone(pid) for pid in started)
