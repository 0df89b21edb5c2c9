"""PyTorch's padding and bias, against torch's own functions: ``--pad P`` / ``--pad L:R`` with
every ``--padding`` fill and ``--bias`` equal ``F.conv1d(F.pad(x, (L, R), mode), w, b)`` and
``nn.Conv1d(padding=P, padding_mode=..., bias=True)``, through the API, the CLI (in-process
and a real process), streams, ``jacobian``, ``grad`` and ``explain``'s printed expressions;
and torch's own conv1d test configurations, ported.

The pads here are the test's own (given, or torch's ``'same'`` rule), never ``ConvSpec``'s.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
import torch.nn.functional as F

import convcli
from convcli.core.explain import explain
from convcli.core.spec import ConvSpec
from convcli.errors import UsageError

FILLS = ("zeros", "reflect", "replicate", "circular")
TORCH_FILL = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate",
              "circular": "circular"}


def torch_reference(x, weight, *, left, right, fill="zeros", stride=1, dilation=1, groups=1,
                    bias=None, correlate=True):
    """``F.conv1d(F.pad(x, (left, right), fill), w, bias)``; convolution flips ``w`` first.

    ``x [B, C, T]`` and ``weight [O, C/G, k]`` tensors; ``bias`` None, a number or ``[O]``."""
    w = weight if correlate else weight.flip(-1)
    if bias is not None:
        bias = torch.as_tensor(bias, dtype=x.dtype).reshape(-1).expand(weight.shape[0])
    padded = F.pad(x, (left, right), mode=TORCH_FILL[fill]) if left or right else x
    return F.conv1d(padded, w, bias, stride=stride, dilation=dilation, groups=groups)


def random_case(rng):
    """Options with explicit pads (P or L:R), a signal [B, C, T], a kernel in one of its three
    shapes with its full weight [O, C/G, k], and a bias (None, one number, or one per output)."""
    stride, dilation = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    fill, correlate = FILLS[rng.integers(4)], bool(rng.integers(2))
    batch, channels, k = int(rng.integers(1, 3)), int(rng.choice([1, 2, 4])), int(rng.integers(1, 7))
    n = int(rng.integers(8, 60))
    longest = n - 1 if fill == "reflect" else n if fill == "circular" else 3 * n
    left = int(rng.integers(0, min(longest, 12) + 1))
    right = left if rng.integers(2) else int(rng.integers(0, min(longest, 12) + 1))
    span = dilation * (k - 1) + 1
    if n + left + right < span:
        right += span - n - left  # zeros or replicate: any pad
        fill = "zeros" if fill in ("reflect", "circular") else fill
    shape, groups = int(rng.integers(3)), 1
    if shape == 0:
        kernel = rng.standard_normal(k)
        full, groups_run = np.broadcast_to(kernel, (channels, 1, k)).copy(), channels
    elif shape == 1:
        kernel = rng.standard_normal((channels, k))
        full, groups_run = kernel[:, None, :].copy(), channels
    else:
        groups = int(rng.choice([g for g in (1, 2, 4) if channels % g == 0]))
        kernel = rng.standard_normal((groups * int(rng.integers(1, 3)), channels // groups, k))
        full, groups_run = kernel, groups
    out_channels = full.shape[0]
    bias = (None, float(rng.standard_normal()), rng.standard_normal(out_channels))[rng.integers(3)]
    pad = left if left == right and rng.integers(2) else (left, right)
    options = {"pad": pad, "padding": fill, "stride": stride, "dilation": dilation,
               "correlate": correlate}
    x = rng.standard_normal((batch, channels, n))
    return options, (left, right), groups, groups_run, x, kernel, full, bias


def reference_of(x, full, groups_run, options, pads, bias):
    return torch_reference(torch.from_numpy(x), torch.from_numpy(full), left=pads[0],
                           right=pads[1], fill=options["padding"], stride=options["stride"],
                           dilation=options["dilation"], groups=groups_run, bias=bias,
                           correlate=options["correlate"]).numpy()


@pytest.mark.parametrize("seed", range(30))
def test_api_pad_and_bias_equal_torch(seed):
    rng = np.random.default_rng(seed)
    options, pads, groups, groups_run, x, kernel, full, bias = random_case(rng)
    expected = reference_of(x, full, groups_run, options, pads, bias)
    case = f"{options} groups={groups} bias={bias}"
    for dtype, tol in ((np.float64, 1e-10), (np.float32, 2e-4)):
        for method in ("auto", "direct", "fft"):
            got = convcli.conv1d(x.astype(dtype), kernel, groups=groups, method=method, bias=bias,
                                 **options)
            assert got.dtype == dtype and got.shape == expected.shape, case
            np.testing.assert_allclose(got, expected, atol=tol * max(1, np.abs(expected).max()),
                                       err_msg=f"{case} {method} {dtype}")
    # tensors: the same numbers, and the gradients of x, the kernel and the bias are torch's
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(kernel, requires_grad=True)
    bt = None if bias is None else torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    got = convcli.conv1d(xt, wt, groups=groups, method=("auto", "direct", "fft")[seed % 3],
                         bias=bt, **options)
    torch.testing.assert_close(got, torch.from_numpy(expected), atol=1e-9, rtol=1e-9, msg=case)
    upstream = torch.from_numpy(rng.standard_normal(expected.shape))
    leaves = [xt, wt] + ([bt] if bt is not None else [])
    grads = torch.autograd.grad((got * upstream).sum(), leaves)
    xr, wr = xt.detach().clone().requires_grad_(), wt.detach().clone().requires_grad_()
    br = None if bt is None else bt.detach().clone().requires_grad_()
    full_r = (wr.expand(x.shape[1], 1, -1) if wr.ndim == 1 else wr[:, None, :] if wr.ndim == 2
              else wr)
    bias_r = None if br is None else br.reshape(-1).expand(full.shape[0])
    ref = torch_reference(xr, full_r, left=pads[0], right=pads[1], fill=options["padding"],
                          stride=options["stride"], dilation=options["dilation"],
                          groups=groups_run, bias=bias_r, correlate=options["correlate"])
    ref_grads = torch.autograd.grad((ref * upstream).sum(), [xr, wr] + ([br] if br is not None else []))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-9, rtol=1e-9, msg=case)


@pytest.mark.parametrize("fill", FILLS)
def test_symmetric_pad_equals_nn_conv1d(fill):
    """``nn.Conv1d(4, 6, 3, padding=P, padding_mode=fill, bias=True, groups=2)`` itself."""
    torch.manual_seed(0)
    for p, stride, dilation in [(1, 1, 1), (2, 2, 1), (3, 1, 2), (0, 3, 1)]:
        module = torch.nn.Conv1d(4, 6, 3, stride=stride, padding=p, dilation=dilation, groups=2,
                                 bias=True, padding_mode=fill, dtype=torch.float64)
        x = torch.randn(2, 4, 11, dtype=torch.float64)
        with torch.no_grad():
            expected = module(x)
            got = convcli.conv1d(x, module.weight, pad=p, padding=fill, stride=stride,
                                 dilation=dilation, groups=2, correlate=True, bias=module.bias)
            got_np = convcli.conv1d(x.numpy(), module.weight.numpy(), pad=p, padding=fill,
                                    stride=stride, dilation=dilation, groups=2, correlate=True,
                                    bias=module.bias.numpy())
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)
        np.testing.assert_allclose(got_np, expected.numpy(), atol=1e-12)


# --- torch's own conv1d test configurations --------------------------------------------------
#: Ported from PyTorch's test suite, every configuration convcli can express:
#: ``sample_inputs_conv1d`` (torch/testing/_internal/common_methods_invocations.py): input,
#: weight and bias shapes, and kwargs; ``new_module_tests`` (common_nn.py): ``Conv1d(in, out,
#: k, stride, padding)`` and the padding-mode loop ``Conv1d(3, 4, 3, 2, 2, 1, 1, True,
#: padding_mode)`` on (2, 3, 3); ``module_inputs_torch_nn_ConvNd`` (common_modules.py):
#: ``Conv1d(4, 5, 3)`` and ``padding='same'`` on (2, 4, 3). nn.Conv1d has a bias by default.
#: (input shape, weight shape, with bias, kwargs of F.conv1d plus padding_mode)
TORCH_CASES = [
    # sample_inputs_conv1d (each also runs unbatched, as there)
    ((1, 3, 4), (3, 3, 3), True, {"stride": 2, "padding": 2, "groups": 1}),
    ((2, 4, 8), (2, 2, 3), True, {"stride": 3, "padding": 1, "groups": 2, "dilation": 2}),
    ((1, 4, 5), (1, 4, 3), False, {"stride": 2, "padding": "valid"}),
    ((2, 2, 4), (2, 1, 4), True, {"stride": 1, "padding": "same", "groups": 2, "dilation": 2}),
    ((1, 4, 5), (3, 4, 3), False, {}),
    # common_nn.py new_module_tests
    ((2, 4, 10), (5, 4, 3), True, {}),
    ((2, 4, 10), (5, 4, 3), True, {"stride": 2}),
    ((2, 4, 10), (5, 4, 3), True, {"padding": 1}),                      # pad1
    ((2, 4, 10), (5, 4, 5), True, {"padding": 2}),                      # pad2
    ((1, 4, 1), (4, 4, 3), True, {"padding": 1}),                       # pad1size1
    ((1, 4, 1), (4, 4, 5), True, {"padding": 2}),                       # pad2size1
    ((0, 4, 10), (5, 4, 3), True, {}),                                  # zero_batch
    ((2, 4, 10), (5, 4, 3), True, {"dilation": 2}),                     # Conv1d_dilated
    ((2, 4, 6), (6, 2, 3), True, {"groups": 2}),                        # Conv1d_groups
    ((2, 4, 10), (5, 4, 3), True, {"padding": "valid"}),                # Conv1d_pad_valid
    ((2, 4, 10), (5, 4, 3), True, {"padding": "same"}),                 # Conv1d_pad_same
    ((2, 4, 10), (5, 4, 4), True, {"padding": "same"}),                 # Conv1d_pad_same2
    ((2, 4, 10), (5, 4, 4), True, {"padding": "same", "dilation": 2}),  # ..._same_dilated
    *[((2, 3, 3), (4, 3, 3), True, {"stride": 2, "padding": 2, "padding_mode": mode})
      for mode in ("reflect", "circular", "replicate", "zeros")],       # {mode}_stride2_pad2
    # common_modules.py module_inputs_torch_nn_ConvNd (N = 1)
    ((2, 4, 3), (5, 4, 3), True, {}),
    ((2, 4, 3), (5, 4, 3), True, {"padding": "same"}),
]


def torch_case_reference(x, w, b, kwargs):
    """What torch computes for a case: nn.Conv1d where a padding mode is given (as the module
    test does), else F.conv1d with its own ``padding=``."""
    kwargs = dict(kwargs)
    mode = kwargs.pop("padding_mode", None)
    if mode is None:
        return F.conv1d(x, w, b, **kwargs)
    module = torch.nn.Conv1d(w.shape[1] * kwargs.get("groups", 1), w.shape[0], w.shape[-1],
                             padding_mode=mode, bias=b is not None, dtype=x.dtype, **kwargs)
    parameters = {"weight": w} | ({"bias": b} if b is not None else {})
    return torch.func.functional_call(module, parameters, (x,))


def convcli_options(kwargs) -> dict:
    """The torch kwargs in convcli's words: ``padding=P`` -> ``pad=P``; ``'valid'`` -> mode
    valid; ``'same'`` -> mode same (torch's same pads are correlate's); padding_mode -> fill."""
    padding = kwargs.get("padding", 0)
    options = {"correlate": True, "stride": kwargs.get("stride", 1),
               "dilation": kwargs.get("dilation", 1), "groups": kwargs.get("groups", 1),
               "padding": kwargs.get("padding_mode", "zeros")}
    if padding == "valid":
        options["mode"] = "valid"
    elif padding == "same":
        options["mode"] = "same"
    else:
        options["pad"] = padding
    return options


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own
@pytest.mark.parametrize("case", TORCH_CASES, ids=[f"{c[0]}-{c[1]}-{c[3]}" for c in TORCH_CASES])
def test_torch_conv1d_test_configurations(case):
    shape, weight_shape, with_bias, kwargs = case
    rng = np.random.default_rng(abs(hash(repr(case))) % 2**32)
    x = torch.from_numpy(rng.standard_normal(shape))
    w = torch.from_numpy(rng.standard_normal(weight_shape))
    b = torch.from_numpy(rng.standard_normal(weight_shape[0])) if with_bias else None
    expected = torch_case_reference(x, w, b, kwargs).detach()
    options = convcli_options(kwargs)
    inputs = [x, x[0]] if shape[0] == 1 else [x]  # sample_inputs_conv1d's unbatched twins
    for item in inputs:
        want = expected if item.ndim == 3 else expected[0]
        for method in ("auto", "direct", "fft"):
            for as_numpy in (False, True):
                arg = (lambda t: t.numpy()) if as_numpy else (lambda t: t)
                got = convcli.conv1d(arg(item), arg(w), bias=None if b is None else arg(b),
                                     method=method, **options)
                got = torch.as_tensor(got)
                assert got.shape == want.shape, (case, method)
                torch.testing.assert_close(got, want, atol=1e-10, rtol=0,
                                           msg=f"{case} {method} numpy={as_numpy}")


# --- the CLI -----------------------------------------------------------------------------------
def _pad_text(pad) -> str:
    return str(pad) if isinstance(pad, int) else f"{pad[0]}:{pad[1]}"


@pytest.mark.parametrize("seed", range(12))
def test_cli_pad_and_bias_equal_torch(cli_fast, tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    options, pads, groups, groups_run, x, kernel, full, bias = random_case(rng)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", kernel)
    args = ["filter", tmp_path / "x.npy", "--kernel", tmp_path / "w.npy", "--pad",
            _pad_text(options["pad"]), "--padding", options["padding"], "--stride",
            options["stride"], "--dilation", options["dilation"], "-o", tmp_path / "y.npy",
            "--json", "--method", ("auto", "direct", "fft")[seed % 3]]
    args += ["--correlate"] if options["correlate"] else []
    args += ["--groups", groups] if kernel.ndim == 3 else []
    if isinstance(bias, float):
        args += ["--bias", repr(bias)]
    elif bias is not None:
        (tmp_path / "b.txt").write_text("".join(f"{float(v)!r}\n" for v in bias))
        args += ["--bias", tmp_path / "b.txt"]
    summary = json.loads(cli_fast(*args, check=True).stdout)
    expected = reference_of(x, full, groups_run, options, pads, bias)
    got = np.load(tmp_path / "y.npy")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-10 * max(1, np.abs(expected).max()))
    assert summary["spec"]["mode"] == "explicit" and summary["spec"]["pads"] == list(pads)
    assert summary["bias"] == (None if bias is None else list(np.ravel(bias)))


def test_cli_real_process_pad_bias_and_explain(cli, tmp_path):
    """`convcli filter --pad --padding circular --bias FILE` and `explain --pad` in a real
    process: what nn.Conv1d(2, 2, 5, padding=3, padding_mode='circular') gives."""
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((1, 2, 40)), rng.standard_normal((2, 2, 5)), np.array([0.5, -2.0])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "w.npy", w)
    (tmp_path / "b.txt").write_text("0.5\n-2\n")
    proc = cli("filter", tmp_path / "x.npy", "--kernel", tmp_path / "w.npy", "--pad", "3",
               "--padding", "circular", "--correlate", "--bias", tmp_path / "b.txt", "-o",
               tmp_path / "y.npy", check=True)
    assert b"correlate pad 3:3" in proc.stderr
    module = torch.nn.Conv1d(2, 2, 5, padding=3, padding_mode="circular", dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(w))
        module.bias.copy_(torch.from_numpy(b))
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-12)
    e = json.loads(cli("explain", "--length", "40", "--size", "5", "--pad", "1:2", "--correlate",
                       "--json", check=True).stdout)
    assert e["pads"] == [1, 2] and e["spec"]["mode"] == "explicit" and e["output_length"] == 39


def test_streamed_file_with_pad_and_bias_equals_torch(cli_fast, tmp_path):
    rng = np.random.default_rng(3)
    data = rng.uniform(-0.4, 0.4, (5000, 2)).astype(np.float32)
    sf.write(tmp_path / "in.wav", data, 8000, subtype="FLOAT")
    hann = scipy.signal.get_window("hann", 31, fftbins=False)
    hann /= hann.sum()
    for pad, fill in (("20:3", "reflect"), ("40", "zeros"), ("0:31", "replicate")):
        left, right = (int(p) for p in (pad.split(":") if ":" in pad else (pad, pad)))
        cli_fast("filter", tmp_path / "in.wav", "--pad", pad, "--padding", fill, "--bias", "0.125",
                 "--block", "700", "-o", tmp_path / "out.wav", check=True)
        got, _ = sf.read(tmp_path / "out.wav", dtype="float64", always_2d=True)
        expected = torch_reference(torch.from_numpy(data.T.astype(np.float64))[None],
                                   torch.from_numpy(hann[::-1].copy()).expand(2, 1, 31),
                                   left=left, right=right, fill=fill, groups=2, bias=0.125)
        np.testing.assert_allclose(got.T, expected[0].numpy(), atol=2e-6, err_msg=pad)


def test_jacobian_and_grad_with_pad_and_bias_are_torch_autograd(cli_fast, tmp_path):
    """The bias changes neither Jacobian (autograd runs with it: --check), and it moves the
    energy loss and its gradient exactly as torch's autograd has them."""
    n, (left, right) = 12, (2, 1)
    w = np.array([0.5, -1.0, 2.0])
    (tmp_path / "w.txt").write_text("0.5\n-1\n2\n")
    x = np.random.default_rng(5).standard_normal(n)
    np.save(tmp_path / "x.npy", x)

    def y_of(signal, taps):
        return torch_reference(signal[None, None], taps.flip(-1)[None, None], left=left,
                               right=right, fill="reflect", stride=2, bias=0.25, correlate=True)

    options = ["--kernel", tmp_path / "w.txt", "--pad", f"{left}:{right}", "--padding", "reflect",
               "--stride", "2", "--bias", "0.25", "--dtype", "float64"]
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    for wrt, primal, f in (("input", xt, lambda v: y_of(v, wt)[0, 0]),
                           ("kernel", wt, lambda v: y_of(xt, v)[0, 0])):
        cli_fast("jacobian", tmp_path / "x.npy", "--wrt", wrt, *options, "--check", "-o",
                 tmp_path / f"J{wrt}.npy", check=True)
        expected = torch.autograd.functional.jacobian(f, primal).numpy()
        np.testing.assert_allclose(np.load(tmp_path / f"J{wrt}.npy"), expected, atol=1e-12)
    text = cli_fast("jacobian", tmp_path / "x.npy", *options, check=True).stdout.decode()
    assert "bias 0.25 adds a constant to every y[i]: J does not depend on it" in text
    assert "convolve pad 2:1" in text
    summary = json.loads(cli_fast("grad", tmp_path / "x.npy", "--loss", "energy", "--wrt", "both",
                                  *options, "-o", tmp_path / "g.npz", "--json", check=True).stdout)
    xr, wr = xt.clone().requires_grad_(), wt.clone().requires_grad_()
    loss = (y_of(xr, wr) ** 2).sum()
    loss.backward()
    assert summary["value"] == pytest.approx(float(loss.detach()), rel=1e-12) and summary["bias"] == [0.25]
    grads = np.load(tmp_path / "g.npz")
    np.testing.assert_allclose(grads["input"].reshape(-1), xr.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(grads["kernel"], wr.grad.numpy(), atol=1e-12)


# --- explain's printed expressions, evaluated ------------------------------------------------
EXPLAIN_GRID = list(itertools.product(
    [("mode", "same"), ("mode", "valid"), ("mode", "full"), ("mode", "causal"), ("pad", 2),
     ("pad", (0, 3)), ("pad", (4, 1))],
    [False, True], [1, 2], [1, 3], FILLS, [None, -0.75]))


def test_explain_equivalents_evaluate_to_torch():
    """Every expression `explain` prints under "same numbers as" (numpy, torch's F.pad +
    F.conv1d, torch's own padding= where it has one, the unfold + einsum form, scipy) is
    evaluated literally and equals F.conv1d with the pads of the semantics table (or the
    explicit ones), dilation and stride included, bias added."""
    n, k = 11, 4
    rng = np.random.default_rng(11)
    x_np, w_np = rng.standard_normal(n), rng.standard_normal(k)
    namespace = {"np": np, "torch": torch, "F": F, "scipy": scipy}
    names = set()
    for (kind, value), correlate, stride, dilation, fill, bias in EXPLAIN_GRID:
        spec = ConvSpec(**{kind: value}, correlate=correlate, stride=stride, dilation=dilation,
                        padding=fill)
        span = dilation * (k - 1) + 1
        if kind == "pad":
            left, right = (value, value) if isinstance(value, int) else value
        else:  # docs/semantics.md's table, written out here
            left = {"same": (span - 1) // 2 if correlate else span // 2, "valid": 0,
                    "full": span - 1, "causal": span - 1}[value]
            right = {"same": span - 1 - left, "valid": 0, "full": span - 1, "causal": 0}[value]
        if (fill == "reflect" and max(left, right) > n - 1) or n + left + right < span:
            continue
        expected = torch_reference(torch.from_numpy(x_np)[None, None],
                                   torch.from_numpy(w_np)[None, None], left=left, right=right,
                                   fill=fill, stride=stride, dilation=dilation, bias=bias,
                                   correlate=correlate)[0, 0].numpy()
        e = explain(spec, n, k, w_np, bias)
        assert e["pads"] == [left, right] and e["output_length"] == len(expected)
        for name, expression in e["equivalents"].items():
            names.add(name)
            arrays = ({"x": x_np, "w": w_np} if name in ("numpy", "scipy")
                      else {"x": torch.from_numpy(x_np), "w": torch.from_numpy(w_np)})
            with torch.no_grad():
                got = np.asarray(eval(expression, namespace | arrays))  # explain's own text
            np.testing.assert_allclose(got, expected, atol=1e-12,
                                       err_msg=f"{spec} bias={bias} {name}: {expression}")
    assert names == {"numpy", "torch", "Conv1d", "einsum", "scipy"}


def test_explain_shows_the_bias_and_torch_padding_call(cli_fast):
    text = cli_fast("explain", "--length", "10", "--size", "3", "--pad", "1", "--padding",
                    "reflect", "--correlate", "--bias", "0.5", check=True).stdout.decode()
    assert "pad=1:1, padding=reflect" in text
    assert "y[i] = Σ_{j=0}^{2} w[j]·x[i − 1 + j] + 0.5" in text
    assert "padding=1, padding_mode='reflect', bias=True" in text
    assert "changes neither Jacobian" in text


# --- what is refused ---------------------------------------------------------------------------
def test_pad_arguments_are_checked_once_with_a_hint():
    x = np.zeros(10)
    for kwargs, match in (({"pad": -1}, "whole numbers ≥ 0"), ({"pad": (1, 2, 3)}, "P or L:R"),
                          ({"pad": 1.5}, "whole numbers"), ({"pad": 2, "mode": "valid"},
                                                             "--mode valid sets them too")):
        with pytest.raises(UsageError, match=match):
            convcli.conv1d(x, np.ones(3), **kwargs)
    with pytest.raises(ValueError, match="reflect padding needs 10 samples"):
        convcli.conv1d(x, np.ones(3), pad=(10, 0), padding="reflect")
    with pytest.raises(ValueError, match=r"padded signal \(10 \+ 1 \+ 0 = 11 samples\)"):
        convcli.conv1d(x, np.ones(12), pad=(1, 0))
    with pytest.raises(ValueError, match="bias has shape"):
        convcli.conv1d(np.zeros((2, 10)), np.ones(3), bias=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="non-finite"):
        convcli.conv1d(x, np.ones(3), bias=float("nan"))
    assert ConvSpec(pad=(2, 1)) == ConvSpec(mode="explicit", pad=[2, 1])
    assert convcli.conv1d(x, np.ones(3), pad=(0, 2), correlate=True).shape == (10,)
