"""Unit tests of ascend_pd_proxy.backends: health states, load and the choice of instance."""

from __future__ import annotations

from collections import Counter
from typing import List, Optional, Tuple

import pytest

from ascend_pd_proxy import backends
from ascend_pd_proxy.backends import EJECTED, HEALTHY, PROBATION, REMOVED, UNKNOWN, Backend, Pool
from ascend_pd_proxy.config import Instance

PREFILL = (
    Instance(url="http://10.0.0.1:7000", name="node1/dp0"),
    Instance(url="http://10.0.0.1:7001", name="node1/dp1"),
)
DECODE = (
    Instance(url="http://10.0.0.2:7100", name="node2/dp0"),
    Instance(url="http://10.0.0.2:7101", name="node2/dp1"),
)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_pool(
    phase: str = "prefill",
    instances: Tuple[Instance, ...] = PREFILL,
    *,
    failures_to_eject: int = 2,
    successes_to_admit: int = 2,
    healthy: bool = True,
    clock: Optional[FakeClock] = None,
    changes: Optional[List[Tuple[str, str, str]]] = None,
) -> Pool:
    """A pool whose backends passed their first health check (unless ``healthy`` is false)."""

    def record(backend: Backend, old: str) -> None:
        if changes is not None:
            changes.append((backend.name, old, backend.state))

    pool = Pool(
        phase,
        instances,
        failures_to_eject=failures_to_eject,
        successes_to_admit=successes_to_admit,
        clock=clock or FakeClock(),
        on_change=record,
    )
    if healthy:
        for backend in pool.backends.values():
            pool.succeeded(backend, check=True)
    return pool


def by_name(pool: Pool, name: str) -> Backend:
    (backend,) = [b for b in pool.backends.values() if b.name == name]
    return backend


def four_ranks(phase: str) -> Tuple[Instance, ...]:
    host = "10.0.0.1" if phase == "prefill" else "10.0.0.2"
    base = 7000 if phase == "prefill" else 7100
    return tuple(Instance(url=f"http://{host}:{base + i}", name=f"{phase}/dp{i}") for i in range(4))


# --- load and least-loaded choice ----------------------------------------------------------------


@pytest.mark.parametrize(("phase", "instances"), [("prefill", PREFILL), ("decode", DECODE)])
def test_idle_choice_picks_the_one_without_in_flight_requests(phase: str, instances: Tuple[Instance, ...]) -> None:
    pool = make_pool(phase, instances)
    busy = by_name(pool, instances[0].name)
    pool.start(busy, 100)
    for _ in range(5):
        assert pool.choose() is by_name(pool, instances[1].name)


def test_prefill_balances_on_prompt_tokens() -> None:
    """Prefill time grows with prompt length: one 32k-token prompt outweighs three short ones."""
    pool = make_pool("prefill")
    long_one, short_ones = by_name(pool, "node1/dp0"), by_name(pool, "node1/dp1")
    pool.start(long_one, 32_000)
    for _ in range(3):
        pool.start(short_ones, 200)
    assert long_one.load() > short_ones.load()
    assert pool.choose() is short_ones


def test_decode_balances_on_running_sequences() -> None:
    """Decode load is mostly the number of sequences: two short requests outweigh one 4k prompt."""
    pool = make_pool("decode", DECODE)
    one, two = by_name(pool, "node2/dp0"), by_name(pool, "node2/dp1")
    pool.start(one, 4_000)
    pool.start(two, 50)
    pool.start(two, 50)
    assert pool.choose() is one


def test_load_formula() -> None:
    pool = make_pool("prefill")
    backend = by_name(pool, "node1/dp0")
    pool.start(backend, 1000)
    pool.start(backend, 24)
    assert backend.load() == 2 * backends.REQUEST_WEIGHT["prefill"] + 1024
    assert (backend.in_flight, backend.in_flight_tokens) == (2, 1024)
    pool.finish(backend, 1000)
    assert (backend.in_flight, backend.in_flight_tokens) == (1, 24)
    pool.finish(backend, 24)
    assert backend.load() == 0


@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_round_robin_among_equals_uses_every_backend(phase: str) -> None:
    pool = make_pool(phase, four_ranks(phase))
    picks = Counter(pool.choose().name for _ in range(40))  # type: ignore[union-attr]
    assert set(picks) == {i.name for i in four_ranks(phase)}
    assert set(picks.values()) == {10}


def test_balanced_traffic_spreads_evenly() -> None:
    """Requests that start and stay in flight are spread over all ranks."""
    pool = make_pool("decode", four_ranks("decode"))
    for _ in range(16):
        chosen = pool.choose()
        assert chosen is not None
        pool.start(chosen, 500)
    assert sorted(b.in_flight for b in pool.backends.values()) == [4, 4, 4, 4]


def test_exclude_skips_backends_already_tried() -> None:
    pool = make_pool("prefill", four_ranks("prefill"))
    tried = {"http://10.0.0.1:7000", "http://10.0.0.1:7001", "http://10.0.0.1:7003"}
    for _ in range(5):
        assert pool.choose(exclude=tried).url == "http://10.0.0.1:7002"  # type: ignore[union-attr]
    assert pool.choose(exclude=[i.url for i in four_ranks("prefill")]) is None


def test_exclude_beats_load() -> None:
    pool = make_pool()
    idle, busy = by_name(pool, "node1/dp0"), by_name(pool, "node1/dp1")
    pool.start(busy, 50_000)
    assert pool.choose(exclude=[idle.url]) is busy


def test_no_routable_backend_gives_none() -> None:
    pool = make_pool(healthy=False)
    assert pool.choose() is None
    assert pool.counts() == {"healthy": 0, "total": 2}


# --- health states -------------------------------------------------------------------------------


def test_new_backends_are_unknown_and_not_routed() -> None:
    clock = FakeClock(50.0)
    pool = make_pool(healthy=False, clock=clock)
    assert {b.state for b in pool.backends.values()} == {UNKNOWN}
    assert all(b.since == 50.0 for b in pool.backends.values())
    assert pool.choose() is None


def test_unknown_becomes_healthy_on_first_passing_check() -> None:
    clock = FakeClock()
    changes: List[Tuple[str, str, str]] = []
    pool = make_pool(healthy=False, clock=clock, changes=changes)
    first = by_name(pool, "node1/dp0")
    clock.advance(2.5)
    pool.succeeded(first, check=True)
    assert first.state == HEALTHY
    assert first.since == clock.now
    assert changes == [("node1/dp0", UNKNOWN, HEALTHY)]
    for _ in range(3):
        assert pool.choose() is first
    assert pool.counts() == {"healthy": 1, "total": 2}


def test_unknown_failing_checks_is_ejected() -> None:
    pool = make_pool(healthy=False, failures_to_eject=2)
    backend = by_name(pool, "node1/dp1")
    pool.failed(backend, "connection refused")
    assert backend.state == UNKNOWN
    pool.failed(backend, "connection refused")
    assert backend.state == EJECTED


@pytest.mark.parametrize("failures_to_eject", [1, 2, 5])
def test_ejection_after_n_consecutive_failures(failures_to_eject: int) -> None:
    clock = FakeClock()
    changes: List[Tuple[str, str, str]] = []
    pool = make_pool(failures_to_eject=failures_to_eject, clock=clock, changes=changes)
    changes.clear()
    bad, good = by_name(pool, "node1/dp0"), by_name(pool, "node1/dp1")
    for i in range(failures_to_eject - 1):
        pool.failed(bad, f"HTTP 500 #{i}")
        assert bad.state == HEALTHY
    clock.advance(7.0)
    pool.failed(bad, "timeout after 600 s")
    assert bad.state == EJECTED
    assert bad.since == clock.now
    assert bad.last_error == "timeout after 600 s"
    assert bad.consecutive_failures == failures_to_eject
    assert changes == [("node1/dp0", HEALTHY, EJECTED)]
    for _ in range(4):
        assert pool.choose() is good
    assert pool.counts() == {"healthy": 1, "total": 2}


def test_a_success_resets_the_failure_count() -> None:
    pool = make_pool(failures_to_eject=3)
    backend = by_name(pool, "node1/dp0")
    for _ in range(5):
        pool.failed(backend, "HTTP 503")
        pool.failed(backend, "HTTP 503")
        pool.succeeded(backend)
        assert backend.state == HEALTHY
        assert backend.consecutive_failures == 0
    assert backend.last_error is None


@pytest.mark.parametrize("successes_to_admit", [1, 2, 3])
def test_ejected_goes_to_probation_after_passing_checks(successes_to_admit: int) -> None:
    pool = make_pool(failures_to_eject=1, successes_to_admit=successes_to_admit)
    backend = by_name(pool, "node1/dp0")
    pool.failed(backend, "connection reset")
    for _ in range(successes_to_admit - 1):
        pool.succeeded(backend, check=True)
        assert backend.state == EJECTED
    pool.succeeded(backend, check=True)
    assert backend.state == PROBATION


def test_a_failed_check_restarts_the_admission_count() -> None:
    pool = make_pool(failures_to_eject=1, successes_to_admit=2)
    backend = by_name(pool, "node1/dp0")
    pool.failed(backend, "down")
    pool.succeeded(backend, check=True)
    pool.failed(backend, "down again")
    pool.succeeded(backend, check=True)
    assert backend.state == EJECTED
    pool.succeeded(backend, check=True)
    assert backend.state == PROBATION


def test_request_successes_do_not_readmit_an_ejected_backend() -> None:
    """Only health checks count towards re-admission (a late answer of an old request does not)."""
    pool = make_pool(failures_to_eject=1, successes_to_admit=1)
    backend = by_name(pool, "node1/dp0")
    pool.failed(backend, "HTTP 500")
    for _ in range(3):
        pool.succeeded(backend)
    assert backend.state == EJECTED
    assert backend.last_error == "HTTP 500"


def _on_probation(pool: Pool, name: str) -> Backend:
    backend = by_name(pool, name)
    for _ in range(pool.failures_to_eject):
        pool.failed(backend, "HTTP 502")
    for _ in range(pool.successes_to_admit):
        pool.succeeded(backend, check=True)
    assert backend.state == PROBATION
    return backend


def test_probation_takes_one_request_at_a_time() -> None:
    pool = make_pool(instances=PREFILL[:1])
    backend = _on_probation(pool, "node1/dp0")
    assert pool.choose() is backend
    pool.start(backend, 100)
    assert pool.choose() is None  # the only backend is busy with its trial request
    assert backend.state == PROBATION
    pool.finish(backend, 100)
    assert pool.choose() is backend  # the trial ended without a verdict: the next one may go


def test_probation_counts_as_routed_to() -> None:
    pool = make_pool()
    _on_probation(pool, "node1/dp0")
    assert pool.counts() == {"healthy": 2, "total": 2}
    for _ in range(pool.failures_to_eject):
        pool.failed(by_name(pool, "node1/dp1"), "HTTP 500")
    assert pool.counts() == {"healthy": 1, "total": 2}


@pytest.mark.parametrize("successes_to_admit", [1, 3])
def test_probation_without_traffic_ends_after_passing_checks(successes_to_admit: int) -> None:
    pool = make_pool(successes_to_admit=successes_to_admit)
    backend = _on_probation(pool, "node1/dp0")
    for _ in range(successes_to_admit - 1):
        pool.succeeded(backend, check=True)
        assert backend.state == PROBATION
    pool.succeeded(backend, check=True)
    assert backend.state == HEALTHY


def test_probation_becomes_healthy_on_request_success() -> None:
    clock = FakeClock()
    changes: List[Tuple[str, str, str]] = []
    pool = make_pool(instances=PREFILL[:1], clock=clock, changes=changes)
    backend = _on_probation(pool, "node1/dp0")
    pool.succeeded(backend, check=True)
    assert backend.state == PROBATION  # passing checks are not enough: a real request must pass
    chosen = pool.choose()
    assert chosen is backend
    pool.start(backend, 100)
    clock.advance(1.5)
    pool.finish(backend, 100)
    pool.succeeded(backend)
    assert backend.state == HEALTHY
    assert backend.since == clock.now
    assert changes[-3:] == [
        ("node1/dp0", HEALTHY, EJECTED),
        ("node1/dp0", EJECTED, PROBATION),
        ("node1/dp0", PROBATION, HEALTHY),
    ]
    pool.start(backend, 100)
    assert pool.choose() is backend  # healthy: no longer one at a time


def test_probation_is_ejected_on_first_failure() -> None:
    pool = make_pool(failures_to_eject=3)
    backend = _on_probation(pool, "node1/dp0")
    pool.start(backend, 100)
    pool.finish(backend, 100)
    pool.failed(backend, "decode stream broke")
    assert backend.state == EJECTED
    assert backend.last_error == "decode stream broke"
    assert pool.choose() is by_name(pool, "node1/dp1")


def test_idle_probation_backend_gets_the_trial() -> None:
    """A probation backend with no request in flight is routable and, being idle, gets the trial."""
    pool = make_pool()
    trial = _on_probation(pool, "node1/dp0")
    pool.start(by_name(pool, "node1/dp1"), 1000)
    assert pool.choose() is trial


def test_describe_reports_state() -> None:
    clock = FakeClock(12.3456)
    pool = make_pool(clock=clock)
    backend = by_name(pool, "node1/dp1")
    pool.start(backend, 42)
    pool.failed(backend, "HTTP 500")
    assert backend.describe() == {
        "name": "node1/dp1",
        "url": "http://10.0.0.1:7001",
        "phase": "prefill",
        "state": HEALTHY,
        "since": 12.346,
        "in_flight": 1,
        "in_flight_tokens": 42,
        "consecutive_failures": 1,
        "last_error": "HTTP 500",
        "group": "",
    }


# --- membership ----------------------------------------------------------------------------------


def test_removed_backend_gets_nothing_and_disappears_when_idle() -> None:
    pool = make_pool("decode", DECODE)
    leaving, staying = by_name(pool, "node2/dp0"), by_name(pool, "node2/dp1")
    pool.start(leaving, 300)
    pool.start(leaving, 300)
    assert pool.remove(leaving.url) is leaving
    assert leaving.state == REMOVED
    for _ in range(4):
        assert pool.choose() is staying
    assert pool.counts() == {"healthy": 1, "total": 2 - 1}
    assert leaving.url in pool.backends  # still finishing its requests
    pool.finish(leaving, 300)
    assert leaving.url in pool.backends
    pool.finish(leaving, 300)
    assert leaving.url not in pool.backends
    assert pool.active() == [staying]


def test_removing_an_idle_backend_forgets_it_at_once() -> None:
    pool = make_pool()
    assert pool.remove("http://10.0.0.1:7000") is not None
    assert list(pool.backends) == ["http://10.0.0.1:7001"]


@pytest.mark.parametrize("url", ["http://10.0.0.9:7000", "http://10.0.0.1:7000"])
def test_remove_twice_or_unknown_is_none(url: str) -> None:
    pool = make_pool()
    pool.start(by_name(pool, "node1/dp0"), 1)
    pool.remove("http://10.0.0.1:7000")
    assert pool.remove(url) is None


def test_removed_backend_health_does_not_come_back() -> None:
    pool = make_pool()
    leaving = by_name(pool, "node1/dp0")
    pool.start(leaving, 10)
    pool.remove(leaving.url)
    pool.succeeded(leaving, check=True)
    pool.failed(leaving, "late failure")
    assert leaving.state == REMOVED


def test_add_renames_an_existing_backend() -> None:
    pool = make_pool()
    backend = by_name(pool, "node1/dp0")
    same = pool.add(Instance(url="http://10.0.0.1:7000", name="node1/dp0-renamed"))
    assert same is backend
    assert backend.name == "node1/dp0-renamed"
    assert backend.state == HEALTHY


def test_re_added_backend_starts_unknown() -> None:
    pool = make_pool()
    pool.remove("http://10.0.0.1:7000")
    backend = pool.add(PREFILL[0])
    assert backend.state == UNKNOWN
    assert pool.choose() is by_name(pool, "node1/dp1")


def test_re_added_while_busy_backend_ends_up_idle() -> None:
    """A rolling restart: remove a rank with a request in flight, add it back, the request ends."""
    pool = make_pool()
    old = by_name(pool, "node1/dp0")
    pool.start(old, 5000)
    pool.remove(old.url)
    pool.add(PREFILL[0])
    pool.succeeded(pool.backends[old.url], check=True)
    pool.finish(old, 5000)  # what the server does when the request started before removal ends
    current = pool.backends[old.url]
    assert (current.in_flight, current.in_flight_tokens) == (0, 0)


def test_reconcile_adds_and_removes_and_reports() -> None:
    pool = make_pool("decode", DECODE)
    new = Instance(url="http://10.0.0.3:7100", name="node3/dp0")
    changes = pool.reconcile([DECODE[1], new])
    assert changes == ["removed decode http://10.0.0.2:7100", "added decode http://10.0.0.3:7100"]
    assert set(pool.backends) == {"http://10.0.0.2:7101", "http://10.0.0.3:7100"}
    assert pool.backends["http://10.0.0.3:7100"].state == UNKNOWN
    assert pool.backends["http://10.0.0.2:7101"].state == HEALTHY  # kept its state
    assert pool.reconcile([DECODE[1], new]) == []


def test_reconcile_keeps_a_busy_removed_backend_until_idle() -> None:
    pool = make_pool("decode", DECODE)
    busy = by_name(pool, "node2/dp0")
    pool.start(busy, 10)
    assert pool.reconcile([DECODE[1]]) == ["removed decode http://10.0.0.2:7100"]
    assert busy.state == REMOVED and busy.url in pool.backends
    assert pool.counts() == {"healthy": 1, "total": 1}
    assert pool.reconcile([DECODE[1]]) == []  # a removed backend is not removed again
    assert pool.reconcile(list(DECODE)) == ["added decode http://10.0.0.2:7100"]
    assert pool.backends[busy.url].state == UNKNOWN


def test_reconcile_renames_silently() -> None:
    pool = make_pool()
    renamed = [Instance(url=i.url, name=i.name.replace("node1", "prefill-a")) for i in PREFILL]
    assert pool.reconcile(renamed) == []
    assert sorted(b.name for b in pool.active()) == ["prefill-a/dp0", "prefill-a/dp1"]


def test_on_change_is_not_called_without_a_change() -> None:
    changes: List[Tuple[str, str, str]] = []
    pool = make_pool(changes=changes)
    assert len(changes) == 2
    for backend in list(pool.backends.values()):
        pool.succeeded(backend, check=True)
        pool.succeeded(backend)
    assert len(changes) == 2


# --- prefix affinity -----------------------------------------------------------------------------


def _loaded(pool: Pool, tokens: int = 2000, requests: int = 2) -> None:
    for backend in pool.active():
        for _ in range(requests):
            pool.start(backend, tokens)


def test_affinity_keeps_one_prefix_on_one_backend() -> None:
    pool = make_pool("prefill", four_ranks("prefill"))
    _loaded(pool)
    for key in ("system:contract A", "system:contract B", "system:contract C"):
        chosen = {pool.choose(affinity_key=key).url for _ in range(12)}  # type: ignore[union-attr]
        assert len(chosen) == 1, key


def test_affinity_holds_under_moderate_imbalance() -> None:
    pool = make_pool("prefill", four_ranks("prefill"))
    _loaded(pool)
    key = "system:a very long shared document"
    preferred = pool.choose(affinity_key=key)
    assert preferred is not None
    pool.start(preferred, 2000)  # 3 requests where the others have 2
    assert pool.choose(affinity_key=key) is preferred


def test_affinity_spreads_different_prefixes() -> None:
    pool = make_pool("prefill", four_ranks("prefill"))
    used = {pool.choose(affinity_key=f"user:document {i}").url for i in range(64)}  # type: ignore[union-attr]
    assert used == {i.url for i in four_ranks("prefill")}


def test_affinity_yields_to_a_much_less_loaded_backend() -> None:
    pool = make_pool("prefill", PREFILL)
    key = "system:shared 100k-token context"
    preferred = pool.choose(affinity_key=key)
    assert preferred is not None
    other = next(b for b in pool.active() if b is not preferred)
    pool.start(other, 1000)
    for _ in range(3):
        pool.start(preferred, 100_000)
    assert pool.choose(affinity_key=key) is other
    # Once the preferred backend drains, the prefix goes back to it.
    for _ in range(3):
        pool.finish(preferred, 100_000)
    assert pool.choose(affinity_key=key) is preferred


def test_affinity_respects_exclusion_and_health() -> None:
    pool = make_pool("prefill", PREFILL)
    key = "system:retry me elsewhere"
    preferred = pool.choose(affinity_key=key)
    assert preferred is not None
    other = next(b for b in pool.active() if b is not preferred)
    assert pool.choose(exclude=[preferred.url], affinity_key=key) is other
    for _ in range(pool.failures_to_eject):
        pool.failed(preferred, "HTTP 500")
    assert pool.choose(affinity_key=key) is other


def test_adding_a_backend_moves_keys_only_to_it() -> None:
    """Rendezvous hashing: scaling out does not reshuffle prefixes between existing ranks."""
    ranks = four_ranks("prefill")
    pool = make_pool("prefill", ranks[:3])
    keys = [f"user:document {i}" for i in range(50)]
    before = {k: pool.choose(affinity_key=k).url for k in keys}  # type: ignore[union-attr]
    pool.add(ranks[3])
    pool.succeeded(pool.backends[ranks[3].url], check=True)
    after = {k: pool.choose(affinity_key=k).url for k in keys}  # type: ignore[union-attr]
    moved = {k for k in keys if after[k] != before[k]}
    assert moved, "some keys should move to the new rank"
    assert all(after[k] == ranks[3].url for k in moved)


# --- data-parallel groups ------------------------------------------------------------------------

GROUPED = (
    Instance(url="http://10.0.0.2:7100", name="node2/dp0", group="decode0"),
    Instance(url="http://10.0.0.2:7101", name="node2/dp1", group="decode0"),
    Instance(url="http://10.0.0.3:7100", name="node3/dp0", group="decode1"),
    Instance(url="http://10.0.0.3:7101", name="node3/dp1", group="decode1"),
)


def test_a_rank_ejected_holds_the_other_ranks_of_its_group() -> None:
    lost: List[Tuple[str, List[str]]] = []
    pool = make_pool("decode", GROUPED)
    pool.on_group_lost = lambda rank, held: lost.append((rank.name, [b.name for b in held]))
    dead = by_name(pool, "node3/dp1")
    pool.failed(dead, "connection refused")
    assert lost == []  # one failure: not ejected yet, the group still serves
    pool.failed(dead, "connection refused")
    assert dead.state == EJECTED
    assert lost == [("node3/dp1", ["node3/dp0"])]
    survivor = by_name(pool, "node3/dp0")
    assert survivor.state == HEALTHY and pool.held_by(survivor) is dead
    assert pool.counts() == {"healthy": 2, "total": 4}
    chosen = {pool.choose().name for _ in range(8)}
    assert chosen == {"node2/dp0", "node2/dp1"}
    # The rank back (the group restarted whole): the group serves again.
    for _ in range(2):
        pool.succeeded(dead, check=True)
    pool.succeeded(dead)
    assert dead.state == HEALTHY and pool.held_by(survivor) is None
    assert pool.counts() == {"healthy": 4, "total": 4}
    assert {pool.choose().name for _ in range(16)} == {b.name for b in GROUPED}


def test_ranks_without_a_group_stand_alone() -> None:
    lost: List[str] = []
    pool = make_pool("decode", DECODE)
    pool.on_group_lost = lambda rank, held: lost.append(rank.name)
    for _ in range(2):
        pool.failed(by_name(pool, "node2/dp0"), "HTTP 500")
    assert lost == [] and pool.counts() == {"healthy": 1, "total": 2}
    assert pool.choose().name == "node2/dp1"


def test_a_whole_group_ejected_is_tried_in_panic_mode_like_any_other() -> None:
    pool = make_pool("decode", GROUPED[:2])
    for backend in list(pool.backends.values()):
        for _ in range(2):
            pool.failed(backend, "HTTP 503")
    assert pool.counts() == {"healthy": 0, "total": 2}
    assert pool.choose() is not None  # panic mode: every rank ejected, one is tried anyway


def test_a_group_that_lost_one_rank_is_not_tried_in_panic_mode() -> None:
    # 1P: prefill0's rank 1 dead, rank 0 stalled but passing its checks. Trying the dead rank
    # would turn "no prefill instance" (503, naming the lost rank) into a 502 from a dead address.
    pool = make_pool("prefill", GROUPED[:2])
    dead, stalled = by_name(pool, "node2/dp1"), by_name(pool, "node2/dp0")
    for _ in range(2):
        pool.failed(dead, "connection refused")
    assert dead.state == EJECTED and stalled.state == HEALTHY
    assert pool.choose() is None
    assert pool.state_of(stalled) == "held (its DP group decode0 lost node2/dp1)"
    assert pool.state_of(dead) == EJECTED
    # Then the stalled rank fails its checks too: the group is ejected whole, panic mode may try it.
    for _ in range(2):
        pool.failed(stalled, "timeout")
    assert pool.choose() is not None


def test_panic_mode_skips_the_lost_rank_but_tries_a_group_ejected_whole() -> None:
    pool = make_pool("decode", GROUPED)
    for name in ("node2/dp1", "node3/dp0", "node3/dp1"):
        for _ in range(2):
            pool.failed(by_name(pool, name), "HTTP 503")
    assert pool.counts() == {"healthy": 0, "total": 4}
    assert {pool.choose().name for _ in range(8)} == {"node3/dp0", "node3/dp1"}
