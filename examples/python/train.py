"""Fits y = sin(3x) with a two-layer perceptron: the loss and its gradient
come from Slope (mlp.slope), the training loop is NumPy (Adam).

    python/test.sh          # builds the package into target/python-venv
    target/python-venv/bin/python examples/python/train.py
"""

import os

import numpy as np

import slope

here = os.path.dirname(os.path.abspath(__file__))
m = slope.compile(os.path.join(here, "mlp.slope"))

rng = np.random.default_rng(0)
xs = np.linspace(-1.0, 1.0, 64)
ys = np.sin(3.0 * xs)
h = 16
p = {"w1": rng.normal(size=h) * 2.0, "b1": rng.normal(size=h), "w2": rng.normal(size=h) * 0.5, "b2": 0.0}

lr, beta1, beta2, eps = 0.02, 0.9, 0.999, 1e-8
mom = {k: np.zeros_like(v) for k, v in p.items()}
vel = {k: np.zeros_like(v) for k, v in p.items()}
first = m.loss(p, xs, ys)
for t in range(1, 501):
    g = m.gradient(p=p, xs=xs, ys=ys)  # a dict like p: the gradient of every field
    for k in p:
        mom[k] = beta1 * mom[k] + (1 - beta1) * g[k]
        vel[k] = beta2 * vel[k] + (1 - beta2) * g[k] ** 2
        step = lr * (mom[k] / (1 - beta1**t)) / (np.sqrt(vel[k] / (1 - beta2**t)) + eps)
        p[k] = p[k] - step
    if t % 100 == 0:
        print(f"step {t:4d}  loss {m.loss(p, xs, ys):.6f}")
last = m.loss(p, xs, ys)
print(f"loss {first:.4f} -> {last:.6f}")
