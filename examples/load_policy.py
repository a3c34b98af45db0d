"""Acting with a policy that `kuberl export` wrote, with numpy alone (README: After training)."""
import json

import numpy as np


def load_policy(path):
    """(act, metadata): act(obs) is the greedy action for one observation or a batch of them."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["metadata"]))
        weights = [f[f"w{i}"] for i in range(len(f.files) - 1)]  # W1, b1, ..., WL, bL

    def act(obs):
        h = np.asarray(obs, np.float32)
        for w, b in zip(weights[:-2:2], weights[1:-2:2]):
            h = h @ w + b
            h = np.maximum(h, meta["negative_slope"] * h)  # leaky ReLU
        q = h @ weights[-2] + weights[-1]
        if meta["dueling"]:  # Q = V + A - mean(A)
            q = q[..., :1] + q[..., 1:] - q[..., 1:].mean(axis=-1, keepdims=True)
        return q.argmax(axis=-1)

    return act, meta
