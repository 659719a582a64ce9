#!/usr/bin/python3
"""tests/bench/bench_train.py: scikit-learn on bench_train's data, the peer bench_train.c
compares the zone's models with (it runs this script itself, with /usr/bin/python3).

Reads DIR/x.f64 (row-major n x p), DIR/y.f64 and DIR/ylin.f64 (raw little-endian float64),
times LinearRegression().fit(x, ylin) (the best of --repeat) and LogisticRegression(lbfgs,
C, max_iter=1000, default tol) .fit(x, y) once, and prints key=value lines: the times, the
logistic fit's iterations, its training log-loss (unpenalised mean), its objective in
sluice's terms (mean log-loss + ||w||^2 / (2 C n), l2 = 1 / (n C)) and that objective's
gradient's max norm at its solution (the precision lbfgs stopped at). Writes the coefficients
then the intercept to DIR/sk_lin_coef.f64 and DIR/sk_log_coef.f64 for bench_train to compare.
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression


def load(path, count):
    a = np.fromfile(path, dtype="<f8")
    if a.size != count:
        sys.exit(f"bench_train.py: {path}: {a.size} values, expected {count}")
    return a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--rows", type=int, required=True)
    ap.add_argument("--cols", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--C", type=float, default=1.0)
    a = ap.parse_args()
    n, p = a.rows, a.cols
    x = load(os.path.join(a.dir, "x.f64"), n * p).reshape(n, p)
    y = load(os.path.join(a.dir, "y.f64"), n)
    ylin = load(os.path.join(a.dir, "ylin.f64"), n)

    best = float("inf")
    for _ in range(a.repeat):
        t = time.perf_counter()
        lr = LinearRegression().fit(x, ylin)
        best = min(best, time.perf_counter() - t)
    print(f"sklearn_ridge_s={best:.4f}", flush=True)
    np.concatenate([lr.coef_, [lr.intercept_]]).astype("<f8").tofile(
        os.path.join(a.dir, "sk_lin_coef.f64"))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        t = time.perf_counter()
        lg = LogisticRegression(solver="lbfgs", C=a.C, max_iter=1000).fit(x, y)
        elapsed = time.perf_counter() - t
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    w = lg.coef_.ravel()
    z = x @ w + lg.intercept_[0]
    logloss = float(np.mean(np.logaddexp(0.0, z) - y * z))
    obj = logloss + float(w @ w) / (2.0 * a.C * n)
    # the gradient of the same objective, max norm: the precision lbfgs stopped at
    r = 0.5 * (1.0 + np.tanh(0.5 * z)) - y
    g = np.concatenate([x.T @ r / n + w / (a.C * n), [r.mean()]])
    print(f"sklearn_logistic_s={elapsed:.4f}")
    print(f"sklearn_logistic_iter={int(lg.n_iter_[0])}")
    print(f"sklearn_logistic_converged={int(converged)}")
    print(f"sklearn_logistic_logloss={logloss:.12f}")
    print(f"sklearn_logistic_obj={obj:.12f}")
    print(f"sklearn_logistic_grad_norm={float(np.abs(g).max()):.3g}", flush=True)
    np.concatenate([w, lg.intercept_]).astype("<f8").tofile(
        os.path.join(a.dir, "sk_log_coef.f64"))


if __name__ == "__main__":
    main()
