import numpy as np
import pytest

from kuberl.nets import DoubleDQN, QNetwork, init_params
from kuberl.tensors import Transitions

GAMMA = 0.875  # exact in float32: the module multiplies gamma by a float32 mask


def huber(td):
    a = np.abs(td)
    return np.where(a <= 1.0, 0.5 * td * td, a - 0.5)


def make_batch(n, obs_size, num_actions, seed, reward_scale=1.0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return Transitions(obs=rng.normal(size=(n, obs_size)).astype(np.float32).astype(dtype),
                       actions=rng.integers(0, num_actions, n).astype(np.int64),
                       rewards=(reward_scale * rng.normal(size=n)).astype(np.float32).astype(dtype),
                       next_obs=rng.normal(size=(n, obs_size)).astype(np.float32).astype(dtype),
                       terminated=np.arange(n) % 3 == 0, truncated=np.zeros(n, bool),
                       steps=np.ones(n, np.uint8))


NET = QNetwork(3, 2, (5, 4))
LAYOUTS = [NET, QNetwork(3, 2, (5,)), QNetwork(3, 2, (5, 4, 6)), QNetwork(3, 2, (5, 4), dueling=True),
           QNetwork(3, 3, (6,), dueling=True)]


def huber_loss_and_grads(params, target, batch, gamma, net=NET):
    return net.huber_loss_and_grads(params, target, batch, gamma)


def q_values(params, obs, net=NET):
    return net.q_values(params, obs)


def small_case(net):
    """`net` in float64 and a batch of 7 with both terminal kinds and TD errors on both sides of 1."""
    rng = np.random.default_rng(3)
    params = [p.astype(np.float64) for p in net.init(rng)]
    target = [p.astype(np.float64) for p in net.init(rng)]
    batch = make_batch(7, net.obs_size, net.num_actions, seed=4)._replace(
        rewards=np.array([3.0, 0.125, -2.5, 0.0625, 2.0, -0.25, 0.0]))  # float32-exact values
    return params, target, batch


@pytest.fixture
def small():
    return small_case(NET)


def reference_q(params, obs, dueling=False):
    """Q-values computed layer by layer, independently of kuberl.nets."""
    h = obs
    layers = list(zip(params[::2], params[1::2]))
    for w, b in layers[:-1]:
        z = h @ w + b
        h = np.where(z > 0, z, 0.01 * z)
    out = h @ layers[-1][0] + layers[-1][1]
    if not dueling:
        return out
    return out[:, :1] + out[:, 1:] - out[:, 1:].mean(axis=1, keepdims=True)


def expected_loss(params, target, batch, gamma, dueling=False):
    """Double DQN Huber loss computed independently, in float64."""
    q = reference_q(params, batch.obs.astype(np.float64), dueling)
    best = np.argmax(reference_q(params, batch.next_obs.astype(np.float64), dueling), axis=1)
    q_next = reference_q(target, batch.next_obs.astype(np.float64), dueling)[np.arange(batch.rows), best]
    y = batch.rewards + gamma ** batch.steps.astype(np.float64) * (1.0 - batch.terminated) * q_next
    td = q[np.arange(batch.rows), batch.actions] - y
    return float(np.mean(huber(td))), td


def test_float64_params_keep_float64(small):
    params, target, batch = small
    loss, grads, _, _ = huber_loss_and_grads(params, target, batch, GAMMA)
    assert all(g.dtype == np.float64 for g in grads)
    assert [g.shape for g in grads] == [p.shape for p in params]


def test_loss_matches_independent_computation(small):
    params, target, batch = small
    loss, _, mean_q, _ = huber_loss_and_grads(params, target, batch, GAMMA)
    want, td = expected_loss(params, target, batch, GAMMA)
    # the fixture must exercise both Huber branches and both terminal kinds
    assert (np.abs(td) > 1).any() and (np.abs(td) < 1).any()
    assert batch.terminated.any() and (~batch.terminated).any()
    assert loss == pytest.approx(want, rel=1e-12)
    q = q_values(params, batch.obs)[np.arange(7), batch.actions]
    assert mean_q == pytest.approx(q.mean(), rel=1e-12)


def central_difference(loss, p: np.ndarray, eps: float) -> np.ndarray:
    """d loss / d p, element by element, moving p in place (and putting it back)."""
    numeric = np.zeros_like(p)
    for idx in np.ndindex(p.shape):
        old = p[idx]
        p[idx] = old + eps
        up = loss()
        p[idx] = old - eps
        down = loss()
        p[idx] = old
        numeric[idx] = (up - down) / (2 * eps)
    return numeric


@pytest.mark.parametrize("net", LAYOUTS, ids=lambda n: f"{n.hidden_sizes}{'-dueling' if n.dueling else ''}")
def test_any_layout_matches_the_reference_loss(net):
    params, target, batch = small_case(net)
    loss, grads, _, _ = net.huber_loss_and_grads(params, target, batch, GAMMA)
    assert loss == pytest.approx(expected_loss(params, target, batch, GAMMA, net.dueling)[0], rel=1e-12)
    assert [g.shape for g in grads] == [p.shape for p in params]
    np.testing.assert_allclose(net.q_values(params, batch.obs), reference_q(params, batch.obs, net.dueling))


@pytest.mark.parametrize("net", LAYOUTS, ids=lambda n: f"{n.hidden_sizes}{'-dueling' if n.dueling else ''}")
def test_gradients_match_finite_differences(net):
    params, target, batch = small_case(net)
    _, grads, _, _ = net.huber_loss_and_grads(params, target, batch, GAMMA)
    loss = lambda: net.huber_loss_and_grads(params, target, batch, GAMMA)[0]  # noqa: E731
    for k, p in enumerate(params):
        numeric = central_difference(loss, p, eps=1e-6)
        np.testing.assert_allclose(grads[k], numeric, rtol=1e-5, atol=1e-8, err_msg=f"params[{k}]")
        assert np.abs(numeric).max() > 0, f"params[{k}] has no gradient at all: the check would be vacuous"


def test_gradients_float32_central_difference():
    """The default float32 path: a looser check with a larger step."""
    rng = np.random.default_rng(5)
    params, target = NET.init(rng), NET.init(rng)
    batch = make_batch(7, 3, 2, seed=6, reward_scale=3.0)
    _, grads, _, _ = huber_loss_and_grads(params, target, batch, GAMMA)
    assert all(g.dtype == np.float32 for g in grads)
    p64 = [p.astype(np.float64) for p in params]
    loss = lambda: expected_loss(p64, target, batch, GAMMA)[0]  # noqa: E731
    for k, p in enumerate(p64):
        numeric = central_difference(loss, p, eps=1e-3)
        np.testing.assert_allclose(grads[k], numeric, rtol=1e-2, atol=1e-4, err_msg=f"params[{k}]")


def test_terminated_target_is_just_the_reward(small):
    params, _, batch = small
    batch = batch._replace(terminated=np.ones(7, bool))
    q = q_values(params, batch.obs)[np.arange(7), batch.actions]
    want = float(np.mean(huber(q - batch.rewards)))
    rng = np.random.default_rng(9)
    for target in ([p * 100 for p in params], [rng.normal(size=p.shape) for p in params]):
        assert huber_loss_and_grads(params, target, batch, GAMMA)[0] == pytest.approx(want, rel=1e-12)
    # and next_obs plays no part either
    moved = batch._replace(next_obs=batch.next_obs + 5.0)
    assert huber_loss_and_grads(params, params, moved, GAMMA)[0] == pytest.approx(want, rel=1e-12)


def test_non_terminated_target_is_double_dqn(small):
    """y = r + gamma * Q_target(s', argmax_a Q_online(s', a)), not max_a Q_target(s', a)."""
    params, target, batch = small
    batch = batch._replace(terminated=np.zeros(7, bool))
    online_best = np.argmax(q_values(params, batch.next_obs), axis=1)
    target_best = np.argmax(q_values(target, batch.next_obs), axis=1)
    assert (online_best != target_best).any(), "fixture must tell Double DQN from vanilla DQN"
    q = q_values(params, batch.obs)[np.arange(7), batch.actions]
    y = batch.rewards + GAMMA * q_values(target, batch.next_obs)[np.arange(7), online_best]
    loss = huber_loss_and_grads(params, target, batch, GAMMA)[0]
    assert loss == pytest.approx(float(np.mean(huber(q - y))), rel=1e-12)
    y_vanilla = batch.rewards + GAMMA * q_values(target, batch.next_obs).max(axis=1)
    assert loss != pytest.approx(float(np.mean(huber(q - y_vanilla))), rel=1e-6)


@pytest.mark.parametrize("net", LAYOUTS[:2], ids=["two layers", "one layer"])
def test_n_step_rows_bootstrap_with_gamma_to_their_length(net):
    params, target, batch = small_case(net)
    batch = batch._replace(steps=np.array([1, 2, 3, 5, 1, 2, 3], np.uint8))
    loss = net.huber_loss_and_grads(params, target, batch, GAMMA)[0]
    assert loss == pytest.approx(expected_loss(params, target, batch, GAMMA)[0], rel=1e-12)
    one_step = net.huber_loss_and_grads(params, target, batch._replace(steps=np.ones(7, np.uint8)), GAMMA)[0]
    assert loss != pytest.approx(one_step, rel=1e-6)


def test_truncated_rows_still_bootstrap(small):
    params, target, batch = small
    trunc = batch._replace(truncated=np.ones(7, bool))
    assert huber_loss_and_grads(params, target, trunc, GAMMA)[0] == huber_loss_and_grads(
        params, target, batch, GAMMA)[0]


def dqn(**kw):
    args = dict(learning_rate=1e-2, gamma=GAMMA, max_grad_norm=10.0, target_update_interval=10**6, seed=0)
    args.update(kw)
    return DoubleDQN(QNetwork(4, 2, (16, 16)), **args)


def test_update_lowers_the_loss_on_a_fixed_batch():
    agent = dqn()
    batch = make_batch(32, 4, 2, seed=1, reward_scale=2.0)
    before = huber_loss_and_grads(agent.params, agent.target_params, batch, GAMMA)[0]
    results = [agent.update(batch) for _ in range(200)]
    after = huber_loss_and_grads(agent.params, agent.target_params, batch, GAMMA)[0]
    assert results[0].loss == pytest.approx(before, rel=1e-6)
    assert after < 0.2 * before
    assert agent.updates == 200
    assert all(np.isfinite(r.loss) and np.isfinite(r.mean_q) and r.grad_norm >= 0 for r in results)


def test_target_copied_every_interval_and_not_before():
    agent = dqn(target_update_interval=5)
    initial = [p.copy() for p in agent.params]
    batch = make_batch(16, 4, 2, seed=2, reward_scale=2.0)
    for i in range(1, 11):
        agent.update(batch)
        same = all(np.array_equal(t, p) for t, p in zip(agent.target_params, agent.params))
        if i % 5 == 0:
            assert same, f"target not synced after update {i}"
            assert all(t is not p for t, p in zip(agent.target_params, agent.params))
        else:
            assert not same, f"target synced early at update {i}"
        if i < 5:
            assert all(np.array_equal(t, p0) for t, p0 in zip(agent.target_params, initial))


def test_target_starts_as_a_copy():
    agent = dqn()
    assert all(np.array_equal(t, p) and t is not p for t, p in zip(agent.target_params, agent.params))


@pytest.mark.parametrize("max_grad_norm", [1e-3, 1e6])
def test_gradient_clipping(max_grad_norm):
    agent = dqn(max_grad_norm=max_grad_norm, learning_rate=1e-3)
    batch = make_batch(16, 4, 2, seed=3, reward_scale=5.0)
    before = [p.copy() for p in agent.params]
    _, raw, _, _ = huber_loss_and_grads(agent.params, agent.target_params, batch, GAMMA)
    raw_norm = float(np.sqrt(sum(np.sum(g.astype(np.float64) ** 2) for g in raw)))
    assert raw_norm > 1e-2
    result = agent.update(batch)
    assert result.grad_norm == pytest.approx(raw_norm, rel=1e-5)  # reported unclipped
    # after one Adam step the first moment is (1 - beta1) * the (clipped) gradient
    applied = np.sqrt(sum(np.sum(m.astype(np.float64) ** 2) for m in agent._m)) / 0.1
    assert applied == pytest.approx(min(raw_norm, max_grad_norm), rel=1e-4)
    # Adam's first step moves each element by at most the learning rate
    for p0, p in zip(before, agent.params):
        assert np.abs(p - p0).max() <= 1e-3 * (1 + 1e-4)
    assert any(np.abs(p - p0).max() > 1e-4 for p0, p in zip(before, agent.params))


def test_load_sets_online_and_target():
    agent = dqn()
    other = QNetwork(4, 2, (16, 16)).init(np.random.default_rng(11))
    agent.load(other)
    for src, p, t in zip(other, agent.params, agent.target_params):
        np.testing.assert_array_equal(p, src)
        np.testing.assert_array_equal(t, src)
    assert agent.params[0] is not other[0]


def test_init_params_shapes_dtype_and_bounds():
    params = init_params([4, 8, 6, 2], np.random.default_rng(0))
    assert [p.shape for p in params] == [(4, 8), (8,), (8, 6), (6,), (6, 2), (2,)]
    assert all(p.dtype == np.float32 for p in params)
    for w, fan_in in zip(params[::2], [4, 8, 6]):
        assert np.abs(w).max() <= 1 / np.sqrt(fan_in)
    QNetwork(4, 2, (8, 6)).check(params)


def test_dueling_head_has_a_value_output_and_centred_advantages():
    net = QNetwork(4, 3, (8,), dueling=True)
    params = net.init(np.random.default_rng(0))
    assert [p.shape for p in params] == [(4, 8), (8,), (8, 4), (4,)]
    obs = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    q = net.q_values(params, obs)
    h = np.maximum(obs @ params[0] + params[1], 0.01 * (obs @ params[0] + params[1]))
    out = h @ params[2] + params[3]
    np.testing.assert_allclose(q.mean(axis=1), out[:, 0], rtol=1e-5, atol=1e-6)  # mean Q is the value
    QNetwork(4, 3, (8,)).check(init_params([4, 8, 3], np.random.default_rng(0)))
    with pytest.raises(ValueError, match="dueling"):
        net.check(init_params([4, 8, 3], np.random.default_rng(0)))  # a plain net's weights


def test_init_params_is_seeded():
    a = init_params([4, 8, 6, 2], np.random.default_rng(1))
    b = init_params([4, 8, 6, 2], np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_greedy_actions_are_argmax():
    net = QNetwork(4, 3, (8, 6))
    params = net.init(np.random.default_rng(0))
    obs = np.random.default_rng(1).normal(size=(10, 4))
    acts = net.greedy_actions(params, obs)
    np.testing.assert_array_equal(acts, np.argmax(q_values(params, obs.astype(np.float32)), axis=1))
    assert acts.shape == (10,)


def shapes(*shape_list):
    return [np.zeros(s, np.float32) for s in shape_list]


@pytest.mark.parametrize("params, obs_size, num_actions", [
    (shapes((4, 8), (8,), (8, 6), (6,), (6, 2)), 4, 2),  # five tensors
    (shapes((4, 8), (8,), (8, 6), (6,), (6, 2), (2,), (2,)), 4, 2),  # seven
    (shapes((5, 8), (8,), (8, 6), (6,), (6, 2), (2,)), 4, 2),  # wrong obs size
    (shapes((4, 8), (8,), (8, 6), (6,), (6, 3), (3,)), 4, 2),  # wrong action count
    (shapes((4, 8), (7,), (8, 6), (6,), (6, 2), (2,)), 4, 2),  # bias of the wrong width
    (shapes((4, 8), (8,), (7, 6), (6,), (6, 2), (2,)), 4, 2),  # layers do not chain
    (shapes((4, 8), (8,), (8, 6), (6,), (6, 2), (1, 2)), 4, 2),  # 2-D bias
    (shapes((4, 8), (8,), (8, 6), (6,), (12,), (2,)), 4, 2),  # 1-D weight
])
def test_check_params_refuses_wrong_shapes(params, obs_size, num_actions):
    with pytest.raises(ValueError, match="do not form"):
        QNetwork(obs_size, num_actions, (8, 6)).check(params)


def test_check_params_accepts_a_valid_net():
    QNetwork(4, 2, (8, 6)).check(shapes((4, 8), (8,), (8, 6), (6,), (6, 2), (2,)))
    QNetwork(4, 2, (8,)).check(shapes((4, 8), (8,), (8, 2), (2,)))


def test_importance_weights_scale_each_rows_loss_and_gradient(small):
    params, target, batch = small
    weights = np.array([1.0, 0.5, 0.25, 2.0, 0.0, 1.0, 0.75])
    loss, grads, _, td = NET.huber_loss_and_grads(params, target, batch, GAMMA, weights)
    assert loss == pytest.approx(float(np.mean(weights * huber(td))), rel=1e-12)
    _, want_td = expected_loss(params, target, batch, GAMMA)
    np.testing.assert_allclose(td, want_td, rtol=1e-12)
    weighted = lambda: NET.huber_loss_and_grads(params, target, batch, GAMMA, weights)[0]  # noqa: E731
    for k, p in enumerate(params):
        np.testing.assert_allclose(grads[k], central_difference(weighted, p, eps=1e-6), rtol=1e-5, atol=1e-8)
