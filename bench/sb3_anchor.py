#!/usr/bin/env python
"""Stable-Baselines3 DQN as the anchor of bench/run_bench.py, run by the interpreter that has it.

Trains one seed with rl-zoo's DQN hyperparameters for the task and evaluates as the bench
evaluates kuberl: every `--eval-every` env steps, `--episodes` greedy episodes on fixed
evaluation seeds. Prints one JSON line: the env steps of the first evaluation at or above the
target (null if none), the training wall time without the evaluations, and the last score.
It imports neither kuberl nor anything else of this repository, so that it runs in its own
environment (torch is several GB; see bench/README.md).

    python bench/sb3_anchor.py --env CartPole-v1 --seed 1 --budget 50000
"""

from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np

# rl-baselines3-zoo's hyperparams/dqn.yml for the four classic tasks.
RL_ZOO = {
    "CartPole-v1": dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000, gamma=0.99,
                        target_update_interval=10, train_freq=256, gradient_steps=128, exploration_fraction=0.16,
                        exploration_final_eps=0.04, policy_kwargs=dict(net_arch=[256, 256])),
    "Acrobot-v1": dict(learning_rate=6.3e-4, batch_size=128, buffer_size=50_000, learning_starts=0, gamma=0.99,
                       target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
                       exploration_final_eps=0.1, policy_kwargs=dict(net_arch=[256, 256])),
    "MountainCar-v0": dict(learning_rate=4e-3, batch_size=128, buffer_size=10_000, learning_starts=1000, gamma=0.98,
                           target_update_interval=600, train_freq=16, gradient_steps=8, exploration_fraction=0.2,
                           exploration_final_eps=0.07, policy_kwargs=dict(net_arch=[256, 256])),
}
RL_ZOO["LunarLander-v3"] = RL_ZOO["Acrobot-v1"]  # rl-zoo gives the two the same settings
EVAL_SEED = 1_000_000  # fixed evaluation seeds: EVAL_SEED + episode


def greedy_return(model, env_id: str, episodes: int, seed: int) -> float:
    env = gym.make(env_id)
    returns = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=seed + episode)
            done, total = False, 0.0
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = env.step(int(action))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return float(np.mean(returns))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", default="CartPole-v1", choices=sorted(RL_ZOO))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=50_000, help="env steps")
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--target", type=float, default=None, help="default: the env's reward threshold")
    p.add_argument("--to-budget", action="store_true", help="train the whole budget instead of stopping at a solve")
    args = p.parse_args()

    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    target = args.target if args.target is not None else gym.spec(args.env).reward_threshold

    class Evaluate(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.solved_at: int | None = None
            self.last = float("nan")
            self.eval_seconds = 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps % args.eval_every:
                return True
            started = time.perf_counter()
            self.last = greedy_return(self.model, args.env, args.episodes, EVAL_SEED)
            self.eval_seconds += time.perf_counter() - started
            if self.solved_at is None and self.last >= target:
                self.solved_at = self.num_timesteps
                return args.to_budget
            return True

    started = time.perf_counter()
    model = DQN("MlpPolicy", args.env, seed=args.seed, verbose=0, **RL_ZOO[args.env])
    callback = Evaluate()
    model.learn(total_timesteps=args.budget, callback=callback)
    wall = time.perf_counter() - started - callback.eval_seconds
    print(json.dumps({"env": args.env, "seed": args.seed, "solved_at": callback.solved_at, "env_steps":
                      int(model.num_timesteps), "train_seconds": round(wall, 2), "last_score": callback.last}))


if __name__ == "__main__":
    main()
