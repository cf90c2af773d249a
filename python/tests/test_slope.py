"""The `slope` Python package: every GradBench example against its fixtures,
gradients against finite differences, values of every kind in and out, and
every kind of error with its code.

Run by python/test.sh (and so by .ci/run) after the package is built into a
virtual environment.
"""

import glob
import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import slope

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples", "gradbench")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# Fixture folder -> example module; tolerances as tests/tests/fixtures.rs
# (GradBench's rule |a - e| / max(1, |a| + |e|); ode's reference gradient is
# the exact solution's, not an AD result of RK4).
EVALS = {
    "hello": "hello", "lse": "lse", "ode": "ode", "gmm": "gmm", "lstm": "lstm", "ba": "ba",
    "ht": "ht", "ht-complicated": "ht", "llsq": "llsq", "det": "det", "kmeans": "kmeans",
    "particle": "particle", "saddle": "saddle",
}
TOLERANCE = {("ode", "gradient"): 1e-6}

_modules = {}


def module(name):
    if name not in _modules:
        _modules[name] = slope.compile(os.path.join(EXAMPLES, name + ".slope"))
    return _modules[name]


def fixtures():
    for folder in sorted(EVALS):
        for path in sorted(glob.glob(os.path.join(FIXTURES, folder, "*.json"))):
            yield pytest.param(folder, path, id=f"{folder}/{os.path.basename(path)}")


def as_numpy(value, ty):
    """A JSON value for a parameter of Slope type `ty`: arrays of numbers
    become NumPy arrays of the parameter's dtype; records and tuples stay
    dicts and lists (the package reads both)."""
    dtypes = {"f64": np.float64, "f32": np.float32, "i64": np.int64, "bool": np.bool_}
    elem = ty.split("]")[-1]
    if ty.startswith("[") and elem in dtypes:
        array = np.array(value, dtype=dtypes[elem])
        # `[]` is an empty array of the parameter's rank.
        return array.reshape((0,) * ty.count("[")) if array.size == 0 else array
    return value


def plain(value):
    """A result as JSON-like Python values, to compare with a fixture."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def close(got, want, tol, path="result"):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{path}: fields {got!r}"
        for k in want:
            close(got[k], want[k], tol, f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            close(g, w, tol, f"{path}[{i}]")
    else:
        err = abs(got - want) / max(1.0, abs(got) + abs(want))
        assert err <= tol, f"{path}: {got} vs {want} (normalised error {err:.3g})"


@pytest.mark.parametrize("folder,path", list(fixtures()))
def test_gradbench_fixture(folder, path):
    with open(path) as f:
        fixture = json.load(f)
    m = module(EVALS[folder])
    entry = m.entries[fixture["function"]]
    given = fixture["input"]
    types = dict(entry.params)
    if isinstance(given, dict) and set(given) == set(types):
        result = entry(**{k: as_numpy(v, types[k]) for k, v in given.items()})
    else:
        result = entry(as_numpy(given, entry.params[0][1]))
    close(plain(result), fixture["output"], TOLERANCE.get((folder, fixture["function"]), 1e-8))


LEAST_SQUARES = """
def loss [n][d] (w: [d]f64) (xs: [n][d]f64) (ys: [n]f64) : f64 =
  let r = map2 (\\x y -> sum (map2 (*) w x) - y) xs ys in
  sum (map (\\e -> e * e) r) / f64 n + 0.1 * sum (map (\\v -> sin v * v) w)

entry value [n][d] (w: [d]f64) (xs: [n][d]f64) (ys: [n]f64) : f64 = loss w xs ys
entry gradient [n][d] (w: [d]f64) (xs: [n][d]f64) (ys: [n]f64) : [d]f64 = grad (\\v -> loss v xs ys) w
entry forward [n][d] (w: [d]f64) (xs: [n][d]f64) (ys: [n]f64) (dw: [d]f64) : f64 =
  jvp (\\v -> loss v xs ys) w dw
"""


def test_gradient_agrees_with_finite_differences_and_forward_mode():
    m = slope.compile_source(LEAST_SQUARES)
    rng = np.random.default_rng(7)
    w, xs, ys = rng.normal(size=4), rng.normal(size=(30, 4)), rng.normal(size=30)
    g = m.gradient(w=w, xs=xs, ys=ys)
    h = 1e-6
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        fd = (m.value(w + e, xs, ys) - m.value(w - e, xs, ys)) / (2 * h)
        assert abs(g[i] - fd) <= 1e-6 * max(1.0, abs(fd)), (i, g[i], fd)
        # Forward mode along a basis direction gives the same component.
        e[i] = 1.0
        assert abs(m.forward(w, xs, ys, dw=e) - g[i]) <= 1e-12 * max(1.0, abs(g[i]))


KINDS = """
entry scale [n] (xs: [n]f32) (k: f32) : [n]f32 = map (\\x -> x * k) xs
entry count [n] (bs: [n]bool) : i64 = sum (map (\\b -> if b then 1 else 0) bs)
entry flip [n] (bs: [n]bool) : [n]bool = map (\\b -> if b then false else true) bs
entry shift [n][m] (xs: [n][m]i64) : [n][m]i64 = map (\\r -> map (\\x -> x + 1) r) xs
entry swap (p: (f64, i64)) : (i64, f64) = (p.1, p.0)
entry norm (p: {x: f64, y: f64}) : {len: f64, scaled: {x: f64, y: f64}} =
  let l = sqrt (p.x * p.x + p.y * p.y) in {len = l, scaled = {x = p.x / l, y = p.y / l}}
entry tip (v: [3]f64) : f64 = v[2]
entry xs_of [n] (ps: [n]{x: f64, y: f64}) : [n]f64 = map (\\p -> p.x) ps
entry pairs [n] (xs: [n]f64) : [n]{a: f64, b: f64} = map (\\x -> {a = x, b = 2.0 * x}) xs
entry at [n] (xs: [n]f64) (k: i64) : f64 = xs[k]
entry nothing (x: f64) : f64 = x
"""


@pytest.fixture(scope="module")
def kinds():
    return slope.compile_source(KINDS, name="kinds.slope")


def test_dtypes_in_and_out(kinds):
    r = kinds.scale(np.array([1.0, 2.5], dtype=np.float32), 2.0)
    assert r.dtype == np.float32 and r.tolist() == [2.0, 5.0]
    assert kinds.count(np.array([True, False, True])) == 2
    assert kinds.flip(np.array([True, False])).tolist() == [False, True]
    r = kinds.shift(np.arange(6, dtype=np.int64).reshape(2, 3))
    assert r.dtype == np.int64 and r.shape == (2, 3) and r.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_tuples_records_and_lists(kinds):
    assert kinds.swap((1.5, 3)) == (3, 1.5)
    # NumPy scalars of the right kind are numbers.
    assert kinds.swap((np.float64(1.5), np.int32(3))) == (3, 1.5)
    assert kinds.nothing(np.array(2.5)) == 2.5  # a 0-dimensional array is a scalar
    r = kinds.norm({"x": 3.0, "y": 4.0})
    assert r == {"len": 5.0, "scaled": {"x": 0.6, "y": 0.8}}
    # Keys beyond the declared fields are ignored, as in JSON input.
    assert kinds.norm({"x": 3.0, "y": 4.0, "note": "extra"}) == r
    assert kinds.tip([1.0, 2.0, 3.0]) == 3.0
    assert kinds.shift([[1, 2], [3, 4]]).tolist() == [[2, 3], [4, 5]]
    assert kinds.xs_of([{"x": 1.0, "y": 2.0}, {"x": 3.0, "y": 4.0}]).tolist() == [1.0, 3.0]
    # An array of records comes back as a record of arrays.
    r = kinds.pairs(np.array([1.0, 2.0]))
    assert set(r) == {"a", "b"} and r["b"].tolist() == [2.0, 4.0]


def test_strided_inputs_and_owned_results(kinds):
    big = np.arange(12, dtype=np.int64).reshape(3, 4)
    for view in (big.T, big[:, ::2], big[::-1], big[:, ::-1], big[1:, 1:3], np.asfortranarray(big)):
        assert kinds.shift(view).tolist() == (view + 1).tolist()
    # A field of a structured array (stride 12) and a misaligned buffer.
    rec = np.zeros(3, dtype=[("a", "f4"), ("b", "f8")])
    rec["a"] = [1.0, 2.0, 3.0]
    assert kinds.scale(rec["a"], 2.0).tolist() == [2.0, 4.0, 6.0]
    odd = np.frombuffer(b"\0" + np.array([1.0, 2.0, 7.0]).tobytes(), dtype=np.float64, offset=1)
    assert not odd.flags.aligned and kinds.tip(odd) == 7.0
    # A uint8 mask viewed as bool holds bytes other than 0 and 1: any
    # non-zero byte is true.
    mask = np.array([0, 2, 255, 1, 0], dtype=np.uint8).view(bool)
    assert kinds.count(mask) == 3
    xs = np.array([1.0, 2.0], dtype=np.float32)
    r = kinds.scale(xs, 3.0)
    r[0] = 100.0  # a result is the caller's: writable, and not the input
    assert xs.tolist() == [1.0, 2.0] and kinds.scale(xs, 3.0).tolist() == [3.0, 6.0]


def error_of(call):
    with pytest.raises(slope.Error) as info:
        call()
    return info.value


@pytest.mark.parametrize(
    "call,cls,code,words",
    [
        (lambda m: m.scale(np.array([1.0]), 2.0), slope.InputError, "E0302", "astype(numpy.float32)"),
        (lambda m: m.shift(np.arange(3)), slope.InputError, "E0302", "1 dimensions"),
        (lambda m: m.scale(np.array([1.0], dtype=np.float32)), slope.InputError, "E0302", "missing `k`"),
        (lambda m: m.nothing(1.0, 2.0), slope.InputError, "E0302", "takes 1 arguments"),
        (lambda m: m.nothing(y=1.0), slope.InputError, "E0302", "no parameter named `y`"),
        (lambda m: m.nothing(1.0, x=1.0), slope.InputError, "E0302", "given twice"),
        (lambda m: m.nothing(True), slope.InputError, "E0302", "must be a number"),
        (lambda m: m.nothing("1"), slope.InputError, "E0302", "must be a number"),
        (lambda m: m.at([1.0], 1.5), slope.InputError, "E0302", "must be an integer"),
        (lambda m: m.tip(np.zeros(4)), slope.InputError, "E0302", "length 3"),
        (lambda m: m.tip([1.0, 2.0]), slope.InputError, "E0302", "expected 3 elements, found 2"),
        (lambda m: m.swap((1.0,)), slope.InputError, "E0302", "tuple of 2"),
        (lambda m: m.norm({"x": 1.0}), slope.InputError, "E0302", "`p.y` is missing"),
        (lambda m: m.norm({"y": 1.0, "z": 1.0}), slope.InputError, "E0302", "`p.x` is missing"),
        (lambda m: m.shift([[1, 2], [3]]), slope.InputError, "E0302", "row 1 has length 1, expected 2"),
        (lambda m: m.nothing(np.bool_(True)), slope.InputError, "E0302", "must be a number"),
        (lambda m: m.nothing(np.array([2.0])), slope.InputError, "E0302", "must be a number"),
        (lambda m: m.nothing(1 + 2j), slope.InputError, "E0302", "must be a number"),
        (lambda m: m.at([1.0], True), slope.InputError, "E0302", "must be an integer"),
        (lambda m: m.at([1.0], 2**70), slope.InputError, "E0302", "out of range for i64"),
        (lambda m: m.scale(np.zeros(2, dtype=np.float32), 1e39), slope.InputError, "E0302", "out of range for f32"),
        (lambda m: m.tip(np.ma.masked_array([1.0, 2.0, 3.0])), slope.InputError, "E0302", "masked array"),
        (lambda m: m.set_threads(-1), slope.InputError, "E0305", "threads"),
        (lambda m: m.call("missing", 1.0), slope.InputError, "E0301", "no entry point named `missing`"),
        (lambda m: m.at(np.array([1.0, 2.0]), 5), slope.RunError, "E0201", "out of bounds"),
        (lambda m: m.set_threads(0), slope.InputError, "E0305", "threads"),
    ],
)
def test_errors_carry_code_and_diagnostic(kinds, call, cls, code, words):
    e = error_of(lambda: call(kinds))
    assert isinstance(e, cls), (type(e), e.diagnostic)
    assert e.code == code and code in e.codes
    assert words in e.diagnostic, e.diagnostic
    assert e.diagnostic.startswith("error[" + code + "]") or f"error[{code}]" in e.diagnostic
    assert e.message and e.message in e.diagnostic


def test_run_errors_point_into_the_source(kinds):
    e = error_of(lambda: kinds.at(np.array([1.0]), -1))
    assert "kinds.slope" in e.diagnostic, e.diagnostic  # the span's file and line


def test_compile_errors():
    e = error_of(lambda: slope.compile_source("entry f (x: f64) : f64 = y + 1.0", name="bad.slope"))
    assert isinstance(e, slope.CompileError) and e.code == "E0101"
    assert "bad.slope" in e.diagnostic and "`y`" in e.message
    e = error_of(lambda: slope.compile_source("entry f (x: f64) : f64 = x +"))
    assert isinstance(e, slope.CompileError) and e.code.startswith("E000")
    e = error_of(lambda: slope.compile("/nonexistent/model.slope"))
    assert isinstance(e, slope.InputError) and e.code == "E0303"
    e = error_of(lambda: slope.compile_source("entry f (x: f64) : f64 = x", threads=70000))
    assert e.code == "E0305"
    e = error_of(lambda: slope.compile_source("entry f (x: f64) : f64 = x", threads=-1))
    assert e.code == "E0305"


def test_entries_signatures_and_attributes(kinds):
    assert list(kinds.entries)[:2] == ["scale", "count"]
    assert kinds.entries["scale"].params == [("xs", "[n]f32"), ("k", "f32")]
    assert kinds.entries["scale"].result == "[n]f32"
    assert "scale" in dir(kinds) and "scale" in repr(kinds.scale)
    with pytest.raises(AttributeError):
        kinds.missing
    assert "nothing" in kinds.emit("opt", "nothing") and "scale" not in kinds.emit("opt", "nothing")


def test_imports_are_read_relative_to_the_file(tmp_path):
    (tmp_path / "helper.slope").write_text("def twice (x: f64) : f64 = 2.0 * x\n")
    (tmp_path / "main.slope").write_text('import "helper"\nentry f (x: f64) : f64 = twice x + grad twice x\n')
    assert slope.compile(tmp_path / "main.slope").f(1.5) == 5.0


def test_calls_from_several_python_threads_agree():
    m = module("gmm")
    with open(os.path.join(FIXTURES, "gmm", "jacobian-5_5_50.json")) as f:
        fixture = json.load(f)
    types = dict(m.entries["jacobian"].params)
    args = {k: as_numpy(v, types[k]) for k, v in fixture["input"].items()}
    alone = plain(m.jacobian(**args))
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: plain(m.jacobian(**args)), range(16)))
    assert all(r == alone for r in results)  # bit for bit


def test_results_are_identical_on_any_thread_count():
    m = slope.compile_source("import \"nn\"\nentry g [n] (x: [n]f64) : [n]f64 = grad logsumexp x", threads=1)
    x = np.sin(np.arange(200_000) * 0.37)
    one = m.g(x)
    for t in (2, 3, 8):
        m.set_threads(t)
        assert np.array_equal(m.g(x), one)


def test_the_gil_is_released_during_a_call():
    # While one thread runs a long Slope call, another Python thread runs.
    m = slope.compile_source(
        "entry spin (n: i64) : f64 = loop acc = 0.0 for i < n do acc + f64 (i % 7)", threads=1
    )
    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(1)
            done.wait(0.001)

    t = threading.Thread(target=tick)
    t.start()
    ticks.clear()
    m.spin(200_000_000)
    during = len(ticks)
    done.set()
    t.join()
    # Holding the GIL, the ticker could tick at most once or twice (Python
    # switches threads every 5 ms, and not during a call that holds it).
    assert during >= 10, during


def test_no_silent_float_conversion_of_nonfinite_lists(kinds):
    # Non-finite values travel in NumPy arrays (exactly), never through JSON.
    r = kinds.scale(np.array([np.inf, np.nan], dtype=np.float32), 1.0)
    assert math.isinf(r[0]) and math.isnan(r[1])
    e = error_of(lambda: kinds.tip([1.0, float("nan"), 2.0]))
    assert e.code == "E0302" and "NumPy array" in e.diagnostic


def test_the_python_example_trains_its_model():
    import subprocess
    import sys

    example = os.path.join(ROOT, "examples", "python")
    out = subprocess.run(
        [sys.executable, os.path.join(example, "train.py")], capture_output=True, text=True, check=True
    ).stdout
    first, last = (float(x) for x in out.strip().splitlines()[-1].split()[1::2])
    assert last < first / 20, out
    # Its gradient (a record of arrays) against central differences.
    m = slope.compile(os.path.join(example, "mlp.slope"))
    rng = np.random.default_rng(3)
    p = {"w1": rng.normal(size=5), "b1": rng.normal(size=5), "w2": rng.normal(size=5), "b2": 0.3}
    xs, ys = np.linspace(-1, 1, 9), np.cos(np.linspace(-1, 1, 9))
    g = m.gradient(p, xs, ys)
    h = 1e-6
    for k in ("w1", "b2"):
        for i in range(np.size(p[k])):
            up = {**p, k: np.array(p[k], dtype=float).copy()}
            down = {**p, k: np.array(p[k], dtype=float).copy()}
            if np.ndim(p[k]) == 0:
                up[k], down[k] = p[k] + h, p[k] - h
                want = g[k]
            else:
                up[k][i] += h
                down[k][i] -= h
                want = g[k][i]
            fd = (m.loss(up, xs, ys) - m.loss(down, xs, ys)) / (2 * h)
            assert abs(fd - want) <= 1e-6 * max(1.0, abs(fd)), (k, i, fd, want)


def test_the_readme_example():
    m = slope.compile(os.path.join(ROOT, "examples", "least_squares.slope"))
    w = m.fit(w0=np.zeros(2), xs=np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), ys=np.array([2.0, -1.0, 1.0]), steps=500)
    assert np.allclose(w, [2.0, -1.0], atol=1e-6), w


def test_empty_arrays(kinds):
    r = kinds.scale(np.zeros(0, dtype=np.float32), 2.0)
    assert r.shape == (0,) and r.dtype == np.float32
    assert kinds.count(np.zeros(0, dtype=bool)) == 0
    # A map over no rows never learns its rows' length: Slope returns 0 for
    # the inner dimension on both engines (noted in docs/python.md).
    assert kinds.shift(np.zeros((0, 5), dtype=np.int64)).shape == (0, 0)


def test_checkpoint_and_save_policies_give_the_same_gradient():
    source = """
entry g [n] (x: [n]f64) (steps: i64) : [n]f64 =
  grad (\\v -> sum (loop y = v for i < steps do map (\\a -> exp (a * 0.1) / (1.0 + a * a)) y)) x
"""
    x = np.linspace(-1.0, 1.0, 17)
    want = slope.compile_source(source).g(x, 9)
    for options in [{"checkpoint": True}, {"save": "nothing"}, {"save": "everything"},
                    {"checkpoint": True, "save": "slow-ops"}]:
        got = slope.compile_source(source, **options).g(x, 9)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0, err_msg=str(options))
    with pytest.raises(slope.InputError) as e:
        slope.compile_source(source, save="sometimes")
    assert e.value.code == "E0305"
    assert "host-calls" in str(e.value)


def test_reassociated_sums_stay_close_and_agree_across_threads():
    source = """
entry f [r][c] (a: [r][c]f64) (v: [c]f64) : [r]f64 = map (\\row -> sum (map2 (*) row v)) a
"""
    rng = np.random.default_rng(7)
    a, v = rng.uniform(-1.0, 1.0, (5, 1000)), rng.uniform(-1.0, 1.0, 1000)
    want = slope.compile_source(source, engine="interp").f(a, v)
    results = [slope.compile_source(source, threads=t, reassociate=True).f(a, v) for t in (1, 2, 3)]
    for got in results:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(got, results[0])


def test_every_engine_gives_the_same_values_and_failures():
    source = """
import "nn"
entry g [n] (x: [n]f64) : [n]f64 = grad logsumexp x
entry at (x: []f64) (i: i64) : f64 = x[i]
"""
    x = np.sin(np.arange(5_000) * 0.37)
    want = slope.compile_source(source, engine="interp").g(x)
    for engine in ["sequential", "multicore"]:
        m = slope.compile_source(source, engine=engine)
        # Summation order may differ in the last bits (docs/native.md).
        np.testing.assert_allclose(m.g(x), want, rtol=1e-12, atol=1e-300, err_msg=engine)
    codes = []
    for engine in ["interp", "sequential", "multicore"]:
        with pytest.raises(slope.Error) as e:
            slope.compile_source(source, engine=engine).at([1.0, 2.0], 5)
        codes.append((e.value.code, str(e.value).splitlines()[0]))
    assert codes[0][0] == "E0201" and codes.count(codes[0]) == 3, codes
    with pytest.raises(slope.InputError) as e:
        slope.compile_source(source, engine="gpu")
    assert e.value.code == "E0305"
    assert "multicore, sequential, interp" in str(e.value)
