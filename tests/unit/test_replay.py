import threading
import time

import numpy as np
import pytest

from kuberl.replay import REPLAY_SNAPSHOTS, ReplayBuffer, SamplesPerInsertLimiter
from kuberl.snapshots import SetAside, load_snapshots, snapshot_name
from kuberl.tensors import Transitions


def rows(start, stop, obs_size=3):
    """Rows numbered start..stop-1; every column carries the number so order is checkable."""
    ids = np.arange(start, stop)
    return Transitions(obs=np.repeat(ids[:, None], obs_size, axis=1).astype(np.float32),
                       actions=ids.astype(np.int64), rewards=ids.astype(np.float32),
                       next_obs=np.repeat(ids[:, None] + 0.5, obs_size, axis=1).astype(np.float32),
                       terminated=ids % 2 == 0, truncated=ids % 3 == 0,
                       steps=(1 + ids % 3).astype(np.uint8))


def assert_rows(batch, ids):
    ids = np.asarray(ids)
    np.testing.assert_array_equal(batch.actions, ids)
    np.testing.assert_array_equal(batch.rewards, ids.astype(np.float32))
    np.testing.assert_array_equal(batch.obs[:, 0], ids.astype(np.float32))
    np.testing.assert_array_equal(batch.next_obs[:, 2], ids + 0.5)
    np.testing.assert_array_equal(batch.terminated, ids % 2 == 0)
    np.testing.assert_array_equal(batch.truncated, ids % 3 == 0)


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        ReplayBuffer(0)


def test_empty_buffer():
    buf = ReplayBuffer(10)
    assert buf.size == 0 and buf.ordered() is None
    with pytest.raises(LookupError):
        buf.sample(1)
    buf.add(rows(0, 0))
    assert buf.size == 0 and buf.total_inserted == 0


def test_fifo_ring_keeps_newest_in_order():
    buf = ReplayBuffer(10)
    start = 0
    for n in (3, 4, 7, 1, 6, 4):  # 25 rows, wrapping twice
        buf.add(rows(start, start + n))
        start += n
        assert buf.size == min(start, 10)
        assert_rows(buf.ordered(), range(max(0, start - 10), start))
    assert start == 25 and buf.total_inserted == 25


def test_batch_larger_than_capacity_keeps_its_newest_rows():
    buf = ReplayBuffer(10)
    buf.add(rows(0, 4))
    buf.add(rows(4, 27))
    assert buf.size == 10 and buf.total_inserted == 27
    assert_rows(buf.ordered(), range(17, 27))
    buf.add(rows(27, 30))
    assert_rows(buf.ordered(), range(20, 30))


def test_ordered_is_a_copy():
    buf = ReplayBuffer(5)
    buf.add(rows(0, 3))
    out = buf.ordered()
    out.rewards[:] = -1
    assert_rows(buf.ordered(), range(3))


def test_sample_draws_only_stored_rows_and_counts():
    buf = ReplayBuffer(10, seed=1)
    buf.add(rows(0, 25))
    buf.add(rows(25, 29))  # stored: 19..28
    seen = set()
    for count in (1, 50, 500):
        s = buf.sample(count)
        assert s.rows == count
        assert set(s.actions.tolist()) <= set(range(19, 29))
        for a, r, o in zip(s.actions, s.rewards, s.obs):  # rows stay whole
            assert r == a and o[0] == a
        seen |= set(s.actions.tolist())
    assert seen == set(range(19, 29))
    assert buf.total_sampled == 551


def test_sample_partially_filled_buffer():
    buf = ReplayBuffer(100)
    buf.add(rows(0, 3))
    assert set(buf.sample(200).actions.tolist()) == {0, 1, 2}


def test_sample_is_seeded():
    a, b = ReplayBuffer(10, seed=7), ReplayBuffer(10, seed=7)
    a.add(rows(0, 10))
    b.add(rows(0, 10))
    np.testing.assert_array_equal(a.sample(20).actions, b.sample(20).actions)


@pytest.mark.parametrize("bad", [
    rows(0, 2, obs_size=4),
    rows(0, 2)._replace(actions=np.zeros(2, np.int32)),
    rows(0, 2)._replace(rewards=np.zeros(2, np.float64)),
    rows(0, 2)._replace(terminated=np.zeros((2, 1), bool)),
])
def test_layout_mismatch_raises_value_error(bad):
    buf = ReplayBuffer(10)
    buf.add(rows(0, 5))
    with pytest.raises(ValueError, match="do not match"):
        buf.add(bad)
    assert buf.total_inserted == 5
    assert_rows(buf.ordered(), range(5))


def restore(data_dir, capacity=None):
    """The one snapshot in data_dir, restored, and its experiment id."""
    [(experiment_id, buffer)] = list(load_snapshots(
        data_dir, REPLAY_SNAPSHOTS, lambda snapshot: ReplayBuffer.from_snapshot(snapshot, capacity)))
    return experiment_id, buffer


def test_save_load_round_trip(tmp_path):
    buf = ReplayBuffer(10)
    buf.add(rows(0, 23))
    buf.sample(7)
    directory = tmp_path / "sub"
    assert buf.save(directory, "team/run")
    experiment_id, loaded = restore(directory)
    assert experiment_id == "team/run"
    assert loaded.capacity == 10 and loaded.size == 10
    assert (loaded.total_inserted, loaded.total_sampled) == (23, 7)
    assert_rows(loaded.ordered(), range(13, 23))
    loaded.add(rows(23, 25))  # the ring keeps going after a restore
    assert_rows(loaded.ordered(), range(15, 25))
    assert [p.name for p in directory.iterdir()] == [snapshot_name("team/run")]  # no temporary file left behind


def test_load_with_smaller_capacity_keeps_newest(tmp_path):
    buf = ReplayBuffer(10)
    buf.add(rows(0, 8))
    buf.save(tmp_path, "x")
    _, small = restore(tmp_path, capacity=3)
    assert small.capacity == 3 and small.total_inserted == 8
    assert_rows(small.ordered(), range(5, 8))
    _, big = restore(tmp_path, capacity=100)
    assert big.capacity == 100
    assert_rows(big.ordered(), range(8))


def test_snapshot_is_a_plain_npz_that_names_its_format_and_experiment(tmp_path):
    buf = ReplayBuffer(4)
    buf.add(rows(0, 3))
    buf.add(rows(3, 6))
    buf.save(tmp_path, "x")
    with np.load(tmp_path / snapshot_name("x"), allow_pickle=False) as data:
        assert set(data.files) == {"format", "experiment_id", "counters", *Transitions._fields}
        assert str(data["format"]) == "kuberl.replay/4" and str(data["experiment_id"]) == "x"
        np.testing.assert_array_equal(data["actions"], [4, 5, 2, 3])  # the ring as stored
        assert data["obs"].dtype == np.float32 and data["terminated"].dtype == bool
        assert data["counters"].tolist() == [4, 6, 0, 2]


def test_a_snapshot_of_the_format_before_versions_is_still_read(tmp_path):
    old = rows(0, 3)
    np.savez(tmp_path / "team%2Fold.npz", counters=np.array([1, 8, 3, 1], np.int64), **old._asdict())
    experiment_id, loaded = restore(tmp_path)
    assert experiment_id == "team/old" and loaded.capacity == 8 and loaded.total_sampled == 1
    assert_rows(loaded.ordered(), range(3))


def test_save_of_empty_buffer_writes_nothing(tmp_path):
    assert not ReplayBuffer(4).save(tmp_path, "x")
    assert not list(tmp_path.iterdir())


def test_a_newer_format_is_refused_and_kept_aside(tmp_path):
    buf = ReplayBuffer(4)
    buf.add(rows(0, 2))
    buf.save(tmp_path, "x")
    path = tmp_path / snapshot_name("x")
    with np.load(path) as data:
        arrays = dict(data)
    arrays["format"] = np.array("kuberl.replay/99")
    np.savez(path, **arrays)
    aside = SetAside()
    assert list(load_snapshots(tmp_path, REPLAY_SNAPSHOTS, ReplayBuffer.from_snapshot, aside)) == []
    assert [p.name for p in aside.paths] == [path.name + ".unsupported"] and not path.exists()


def test_concurrent_adds_keep_counts_exact():
    buf = ReplayBuffer(500)
    batch = rows(0, 3)

    def work():
        for _ in range(1000):
            buf.add(batch)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert buf.total_inserted == 12_000
    assert buf.size == 500
    # every slot still holds a whole row, in the repeating 0,1,2 pattern
    order = buf.ordered().actions
    assert set(np.diff(order) % 3) == {1}


# --- the rate limiter -----------------------------------------------------------------------


def filled(n):
    buf = ReplayBuffer(1000)
    if n:
        buf.add(rows(0, n))
    return buf


def test_limiter_allows_warm_up():
    limiter = SamplesPerInsertLimiter(samples_per_insert=1.0, min_inserts=10, tolerance=0)
    assert limiter.wait_for_insert(filled(9), timeout=0.01)


def test_limiter_ratio_arithmetic():
    limiter = SamplesPerInsertLimiter(samples_per_insert=2.0, min_inserts=10, tolerance=5)
    buf = filled(20)
    buf.total_sampled = 30  # 20 - 30/2 = 5 <= 5
    assert limiter.wait_for_insert(buf, timeout=0.01)
    buf.total_sampled = 29  # 20 - 14.5 > 5
    assert not limiter.wait_for_insert(buf, timeout=0.01)


def test_limiter_credits_a_shard_with_its_share_of_the_experiments_draws():
    limiter = SamplesPerInsertLimiter(samples_per_insert=1.0, min_inserts=0, tolerance=5)
    lagging = filled(20)
    lagging.total_sampled = 2  # the learner drew elsewhere: by its own draws, 18 ahead
    assert not limiter.wait_for_insert(lagging, timeout=0.01)
    # The experiment: 40 inserted, 36 sampled over two shards; 20 of the inserts earn 18 draws.
    limiter.notify(experiment_inserted=40, experiment_sampled=36)
    assert limiter.credited_draws(lagging) == 18
    assert limiter.wait_for_insert(lagging, timeout=0.01)  # 20 - 18 <= 5
    limiter.notify(experiment_inserted=40, experiment_sampled=20)  # the experiment is 20 ahead
    assert not limiter.wait_for_insert(lagging, timeout=0.01)  # 20 - 10 > 5
    limiter.notify()  # a learner that sends no totals leaves the last ones standing
    assert limiter.credited_draws(lagging) == 10


def test_a_shard_is_never_credited_fewer_draws_than_its_own():
    # One shard, a trickling learner that drew 1 024 rows: a report that lags them must not
    # hold the shard, or it would wait on a learner whose allowance waits on the shard.
    limiter = SamplesPerInsertLimiter(samples_per_insert=1.0, min_inserts=0, tolerance=1000)
    buf = filled(1025)
    buf.total_sampled = 1024
    limiter.notify(experiment_inserted=1025, experiment_sampled=0)
    assert limiter.credited_draws(buf) == 1024
    assert limiter.wait_for_insert(buf, timeout=0.01)


def test_of_two_shards_the_one_further_ahead_holds_first():
    limiter_a, limiter_b = (SamplesPerInsertLimiter(1.0, min_inserts=0, tolerance=5) for _ in range(2))
    a, b = filled(40), filled(20)
    for limiter in (limiter_a, limiter_b):
        limiter.notify(experiment_inserted=60, experiment_sampled=45)  # the experiment: 15 ahead
    # a: 40 - 30 = 10 ahead of its share; b: 20 - 15 = 5, within its tolerance.
    assert not limiter_a.wait_for_insert(a, timeout=0.01)
    assert limiter_b.wait_for_insert(b, timeout=0.01)


def background_wait(limiter, buf, timeout=5.0):
    result = {}

    def run():
        result["allowed"] = limiter.wait_for_insert(buf, timeout)
        result["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_limiter_blocks_when_ahead_and_releases_after_samples():
    limiter = SamplesPerInsertLimiter(samples_per_insert=1.0, min_inserts=10, tolerance=5)
    buf = filled(20)
    t0 = time.monotonic()
    assert not limiter.wait_for_insert(buf, timeout=0.05)
    assert time.monotonic() - t0 >= 0.04
    thread, result = background_wait(limiter, buf)
    time.sleep(0.05)
    assert thread.is_alive()
    buf.sample(10)  # 20 - 10 > 5: still ahead
    limiter.notify()
    time.sleep(0.05)
    assert thread.is_alive()
    buf.sample(5)  # 20 - 15 <= 5
    released = time.monotonic()
    limiter.notify()
    thread.join(2.0)
    assert not thread.is_alive() and result["allowed"] is True
    assert result["at"] - released < 1.0


def test_limiter_close_releases_waiters():
    limiter = SamplesPerInsertLimiter(samples_per_insert=1.0, min_inserts=0, tolerance=0)
    buf = filled(5)
    waiters = [background_wait(limiter, buf) for _ in range(3)]
    time.sleep(0.05)
    assert all(t.is_alive() for t, _ in waiters)
    limiter.close()
    for thread, result in waiters:
        thread.join(2.0)
        assert result["allowed"] is True
    assert limiter.wait_for_insert(buf, timeout=0.0)  # closed for good


def test_prioritized_draws_follow_the_priorities_the_learner_sent():
    buf = ReplayBuffer(8, seed=0)
    buf.add(rows(0, 8))
    buf.prioritize(1.0)
    first = buf.draw(64)
    assert first.keys is not None and set(first.rows.actions) <= set(range(8))
    np.testing.assert_allclose(first.probabilities, 1 / 8)  # every stored row starts at the same priority
    keys = np.arange(8)  # row i was the i-th written, so its key is i
    assert buf.update_priorities(keys, np.array([0, 0, 0, 0, 0, 0, 1.0, 3.0])) == 8
    drawn = buf.draw(20_000)
    counts = np.bincount(drawn.rows.actions, minlength=8) / 20_000
    assert counts[:6].max() < 0.001 and counts[6] == pytest.approx(0.25, abs=0.02)
    np.testing.assert_allclose(drawn.probabilities[drawn.rows.actions == 7], 0.75, rtol=1e-5)
    assert buf.priority_mass == pytest.approx(4.0, rel=1e-5)


def test_new_rows_get_the_largest_priority_and_stale_keys_are_ignored():
    buf = ReplayBuffer(4, seed=1)
    buf.prioritize(0.5)
    buf.add(rows(0, 4))
    buf.update_priorities(np.arange(4), np.array([9.0, 1.0, 1.0, 1.0]))
    buf.add(rows(4, 6))  # overwrite rows 0 and 1 (keys 0, 1): the new rows weigh as the largest, 9
    assert buf.update_priorities(np.array([0, 1, 2]), np.array([0.0, 0.0, 0.0])) == 1  # only key 2 is stored
    drawn = buf.draw(4000)
    assert not ({0, 1} & set(drawn.rows.actions))
    by_row = {a: p for a, p in zip(drawn.rows.actions, drawn.probabilities)}
    assert by_row[4] == pytest.approx(by_row[5]) and by_row[4] > 10 * by_row.get(3, 0) / 9


def test_uniform_replay_refuses_priorities_and_bad_priorities_are_refused():
    buf = ReplayBuffer(4)
    buf.add(rows(0, 4))
    with pytest.raises(ValueError, match="samples uniformly"):
        buf.update_priorities(np.arange(2), np.ones(2))
    assert buf.draw(3).keys is None and buf.priority_mass == 4
    buf.prioritize(0.6)
    for bad in (np.array([np.nan, 1.0]), np.array([-1.0, 1.0]), np.ones(3)):
        with pytest.raises(ValueError, match="priorities"):
            buf.update_priorities(np.arange(2), bad)


def row_probabilities(buf: ReplayBuffer) -> dict[int, float]:
    drawn = buf.draw(5000)
    return {int(a): float(p) for a, p in zip(drawn.rows.actions, drawn.probabilities)}


@pytest.mark.parametrize("inserted, capacity", [(6, None), (13, None), (13, 4)],
                         ids=["partly-full", "wrapped-ring", "smaller-capacity"])
def test_a_restored_shard_draws_by_the_priorities_the_learner_had_sent(tmp_path, inserted, capacity):
    buf = ReplayBuffer(8, seed=2)
    buf.prioritize(0.6)
    buf.add(rows(0, inserted))
    first = inserted - buf.size
    buf.update_priorities(np.arange(first, inserted), np.arange(buf.size, dtype=np.float64) + 1.0)
    want = row_probabilities(buf)
    buf.save(tmp_path, "per")
    _, loaded = restore(tmp_path, capacity)
    assert loaded.prioritized and loaded.priority_exponent == 0.6
    got = row_probabilities(loaded)
    kept = sorted(want)[-loaded.size:]  # with a smaller capacity, the newest rows
    assert sorted(got) == kept
    scale = sum(want[r] for r in kept)  # fewer rows: the same ratios between them
    for row in kept:
        assert got[row] == pytest.approx(want[row] / scale, rel=1e-5)
    # New rows still come in at the largest priority the learner had sent.
    loaded.add(rows(100, 101))
    newest = row_probabilities(loaded)
    assert newest[100] == pytest.approx(max(newest.values()), rel=1e-5)
