"""FIR design against scipy.signal.firwin/kaiserord; filter banks and grouped kernels against a
per-group numpy/scipy reference; --gain/--normalize-output; a few real CLI runs."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
from conftest import SAMPLES

from convcli.core import fir
from convcli.core.kernels import designed_kernel, make_kernel, to_weight
from convcli.core.levels import apply_level, check_level_options
from convcli.errors import UsageError

RATE = 44100.0
CASES = {
    "lowpass": [4000.0],
    "highpass": [4000.0],
    "bandpass": [300.0, 3400.0],
    "bandstop": [300.0, 3400.0],
}
WINDOWS = [("hann", None), ("hamming", None), ("blackman", None), ("kaiser", 8.0),
           ("kaiser", 2.5), ("rect", None)]


def scipy_firwin(size, band, cutoffs, window, rate=RATE, **kw):
    name, param = window
    spec = {"rect": "boxcar"}.get(name, name)
    return scipy.signal.firwin(size, cutoffs if len(cutoffs) > 1 else cutoffs[0],
                               window=(spec, param) if param is not None else spec,
                               pass_zero=band, fs=rate, **kw)


@pytest.mark.parametrize("band", sorted(CASES))
@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: f"{w[0]}:{w[1]}")
def test_firwin_equals_scipy(band, window):
    for size in (1, 3, 5, 31, 101, 257):
        for rate in (RATE, 16000.0, 9000.0):
            got = fir.firwin(size, CASES[band], rate, band, window)
            want = scipy_firwin(size, band, CASES[band], window, rate)
            assert got.shape == (size,) and got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15,
                                       err_msg=f"{band} {window} size={size} rate={rate}")


@pytest.mark.parametrize("band", ["lowpass", "bandpass"])
def test_even_sizes_allowed_where_nyquist_is_stopband(band):
    with pytest.raises(UsageError, match="no gain to scale"):  # hann(2) = [0, 0]; scipy: NaN
        fir.firwin(2, CASES[band], RATE, band)
    for size in (4, 30, 100):
        np.testing.assert_allclose(fir.firwin(size, CASES[band], RATE, band),
                                   scipy_firwin(size, band, CASES[band], ("hann", None)),
                                   rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("band", ["highpass", "bandstop"])
def test_even_size_highpass_bandstop_is_an_error_as_in_scipy(band):
    with pytest.raises(ValueError):
        scipy_firwin(100, band, CASES[band], ("hann", None))
    with pytest.raises(UsageError, match=r"odd number of taps.*--size 100") as err:
        fir.firwin(100, CASES[band], RATE, band)
    assert "--size 101" in err.value.hint


@pytest.mark.parametrize("cutoffs", [[0.0], [-5.0], [22050.0], [30000.0]])
def test_cutoffs_outside_the_band_are_errors(cutoffs):
    with pytest.raises(UsageError, match="strictly between 0 and 22050"):
        fir.firwin(31, cutoffs, RATE, "lowpass")
    if cutoffs[0] > 0:
        request = fir.FirRequest("lowpass", tuple(cutoffs))
        with pytest.raises(UsageError, match=r"outside \(0, 22050\) Hz"):
            request.check_rate(RATE, "chord.wav")


def test_request_parsing_and_refusals():
    req = fir.request_from_options(bandpass="300:3400")
    assert req == fir.FirRequest("bandpass", (300.0, 3400.0))
    assert fir.request_from_options() is None
    with pytest.raises(UsageError, match="LO must be below HI"):
        fir.request_from_options(bandstop="3400:300")
    with pytest.raises(UsageError, match="both given"):
        fir.request_from_options(lowpass=1000.0, highpass=200.0)
    with pytest.raises(UsageError, match="LO:HI"):
        fir.request_from_options(bandpass="300")
    with pytest.raises(UsageError, match="applies to a designed filter"):
        fir.request_from_options(transition=100.0)
    with pytest.raises(UsageError, match="from 8 to 300"):
        fir.request_from_options(lowpass=1000.0, attenuation=5.0)


@pytest.mark.parametrize("attenuation", [21.0, 35.0, 50.0, 60.0, 80.0, 120.0])
@pytest.mark.parametrize("width", [0.01, 0.05, 0.2])
def test_kaiser_formulas_equal_scipy(attenuation, width):
    assert fir.kaiserord(attenuation, width) == scipy.signal.kaiserord(attenuation, width)
    assert fir.kaiser_beta(attenuation) == scipy.signal.kaiser_beta(attenuation)
    assert fir.kaiser_atten(101, width) == pytest.approx(scipy.signal.kaiser_atten(101, width))


@pytest.mark.parametrize("band", sorted(CASES))
def test_kaiser_design_by_specification(band):
    """--transition/--attenuation: size and beta from kaiserord, made odd where the band needs it."""
    transition, attenuation = 500.0, 70.0
    request = fir.FirRequest(band, tuple(CASES[band]), transition=transition, attenuation=attenuation)
    made = fir.design(request, RATE)
    taps, beta = scipy.signal.kaiserord(attenuation, transition / (RATE / 2))
    if band in ("highpass", "bandstop") and taps % 2 == 0:
        taps += 1
    assert made.size == taps and made.window == ("kaiser", beta)
    np.testing.assert_allclose(made.coefficients,
                               scipy_firwin(taps, band, CASES[band], ("kaiser", beta)),
                               rtol=1e-12, atol=1e-15)
    # the spec is met, to the Kaiser method's usual slack of a fraction of a dB per edge; where
    # the ripples of two edges overlap (0-50 Hz lies 250 Hz from both +300 Hz and its image at
    # -300 Hz) they can add up to 2x, i.e. 6 dB
    from convcli.core.response import measure

    r = measure(made.coefficients, RATE, band=band, cutoffs=CASES[band], transition=transition)
    slack = 1.0 if len(CASES[band]) == 1 else 1.0 + 20 * np.log10(2)
    assert r.stopband_attenuation_db > attenuation - slack


def test_kaiser_width_with_explicit_size_is_firwins_width():
    request = fir.FirRequest("lowpass", (4000.0,), transition=800.0)
    made = fir.design(request, RATE, size=101)
    want = scipy.signal.firwin(101, 4000.0, width=800.0, fs=RATE)
    np.testing.assert_allclose(made.coefficients, want, rtol=1e-12, atol=1e-15)
    with pytest.raises(UsageError, match="all given"):
        fir.design(fir.FirRequest("lowpass", (4000.0,), 800.0, 60.0), RATE, size=101)
    with pytest.raises(UsageError, match="cannot choose the tap count"):
        fir.design(fir.FirRequest("lowpass", (4000.0,), attenuation=60.0), RATE)
    with pytest.raises(UsageError, match="Kaiser window themselves"):
        fir.design(fir.FirRequest("lowpass", (4000.0,), 800.0), RATE, window="hann")


def test_designed_kernel_keeps_firwin_scaling_unless_told():
    request = fir.FirRequest("highpass", (1000.0,))
    h = make_kernel(design=request, rate=RATE, size=31, window_spec="hamming")
    np.testing.assert_allclose(h, scipy_firwin(31, "highpass", [1000.0], ("hamming", None)),
                               rtol=1e-12, atol=1e-15)
    peak = make_kernel(design=request, rate=RATE, size=31, normalization="peak")
    assert np.max(np.abs(peak)) == pytest.approx(1.0)
    with pytest.raises(UsageError, match="needs the signal's sample rate"):
        designed_kernel(request, None)
    with pytest.raises(UsageError, match="--periodic"):
        designed_kernel(request, RATE, periodic=True)
    with pytest.raises(UsageError, match="--kernel both given"):
        designed_kernel(request, RATE, has_file=True)


# --- filter banks and groups -------------------------------------------------------------------
def bank_reference(x, w, groups, correlate):
    """y[o] = Σ_{c in o's group} conv(x[c], w[o, c − first channel of the group]), mode same."""
    channels = x.shape[0]
    out_channels, per_group, k = w.shape
    outs_per_group = out_channels // groups
    ys = []
    for o in range(out_channels):
        g = o // outs_per_group
        acc = 0
        for c in range(per_group):
            taps = w[o, c][::-1] if correlate else w[o, c]
            full = np.convolve(x[g * per_group + c], taps)
            left = (k - 1) // 2 if correlate else k // 2
            acc = acc + full[left : left + x.shape[1]]
        ys.append(acc)
    assert channels == groups * per_group
    return np.stack(ys)


@pytest.mark.parametrize("groups,channels,out_channels", [(1, 2, 16), (2, 2, 16), (2, 4, 6),
                                                          (4, 4, 4), (3, 6, 9)])
@pytest.mark.parametrize("correlate", [False, True])
def test_grouped_kernels_match_per_group_reference(rng, groups, channels, out_channels, correlate):
    from convcli.core.spec import ConvSpec
    from convcli.pipeline import filter_arrays

    x = rng.standard_normal((3, channels, 200))
    w = rng.standard_normal((out_channels, channels // groups, 5))
    spec = ConvSpec(groups=groups, correlate=correlate)
    for method in ("direct", "fft"):
        (y,), _ = filter_arrays([x], w, spec, method=method, device="cpu")
        assert y.shape == (3, out_channels, 200)
        for b in range(3):
            np.testing.assert_allclose(y[b], bank_reference(x[b], w, groups, correlate),
                                       rtol=1e-10, atol=1e-10,
                                       err_msg=f"groups={groups} {method} correlate={correlate}")


def test_bad_group_shapes_are_refused():
    w = np.zeros((16, 2, 3))
    with pytest.raises(Exception, match="second axis is 2"):
        to_weight(w, channels=2, groups=2)
    with pytest.raises(Exception, match="divide"):
        to_weight(np.zeros((5, 1, 3)), channels=2, groups=2)


# --- output level ----------------------------------------------------------------------------
def test_gain_and_normalize_output(rng):
    y = rng.standard_normal((2, 3, 100))
    out, info = apply_level(y, gain_db=-6.0)
    np.testing.assert_allclose(out, y * 10 ** (-6 / 20))
    out, info = apply_level(y, peak_dbfs=-1.0)
    assert np.max(np.abs(out)) == pytest.approx(10 ** (-1 / 20))
    assert info.peak_before == pytest.approx(np.max(np.abs(y)))
    np.testing.assert_allclose(out / y, np.full(y.shape, out.flat[0] / y.flat[0]))  # one factor
    out, info = apply_level(np.zeros((1, 1, 4)), peak_dbfs=-1.0)
    assert info.silent and not out.any()
    with pytest.raises(UsageError, match="both set"):
        check_level_options(3.0, -1.0)
    out32, _ = apply_level(y.astype(np.float32), gain_db=3.0)
    assert out32.dtype == np.float32


# --- the CLI, as a user runs it (a handful of subprocesses) -------------------------------------
def test_cli_lowpass_equals_firwin_convolution(cli, tmp_path):
    out = tmp_path / "lp.wav"
    proc = cli("filter", SAMPLES / "chord.wav", "--lowpass", "4000", "--size", "101",
               "--window", "kaiser:8", "-o", out, "--normalize-output")
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"lowpass 4000 Hz, kaiser:8 (101 taps)" in proc.stderr
    x, rate = sf.read(SAMPLES / "chord.wav", dtype="float64")
    h = scipy.signal.firwin(101, 4000, window=("kaiser", 8.0), fs=rate)
    y = np.stack([scipy.signal.convolve(x[:, c], h, mode="same") for c in range(2)], axis=1)
    y *= 10 ** (-1 / 20) * 32767 / 32768 / np.max(np.abs(y))  # peak to −1 dBFS of PCM_16
    got, got_rate = sf.read(out, dtype="int16")
    assert got_rate == rate and got.shape == x.shape
    assert np.max(np.abs(got - np.rint(y * 32768))) <= 1


def test_cli_filter_bank_writes_16_channel_wav(cli_fast, tmp_path):
    out = tmp_path / "bank.wav"
    proc = cli_fast("filter", SAMPLES / "chord.wav", "--kernel", SAMPLES / "conv1d_2x16x3.npy",
               "--gain", "-3", "--json", "-o", out)
    assert proc.returncode == 0, proc.stderr.decode()
    x, _ = sf.read(SAMPLES / "chord.wav", dtype="float64")
    w = np.load(SAMPLES / "conv1d_2x16x3.npy").astype(np.float64)
    want = bank_reference(x.T, w, groups=1, correlate=False).T * 10 ** (-3 / 20)
    got, _ = sf.read(out, dtype="int16")
    assert got.shape == (x.shape[0], 16)
    assert np.max(np.abs(got - np.clip(np.rint(want * 32768), -32768, 32767))) <= 1


def test_cli_design_errors(cli_fast, tmp_path):
    proc = cli_fast("filter", SAMPLES / "batch.npy", "--highpass", "500", "-o", tmp_path / "y.npy")
    assert proc.returncode == 2
    assert proc.stderr.decode().startswith("error: --highpass 500 is in Hz")
    assert "--rate" in proc.stderr.decode()
    proc = cli_fast("filter", SAMPLES / "chord.wav", SAMPLES / "speech.wav", "--lowpass", "3000",
               "--out-dir", tmp_path)
    assert proc.returncode == 2 and b"different filter for each sample rate" in proc.stderr
    assert not list(tmp_path.iterdir())


def test_normalize_output_value_is_optional():
    from convcli.cli.app import _optional_values

    assert _optional_values(["filter", "a.wav", "--normalize-output"]) == [
        "filter", "a.wav", "--normalize-output", "-1"]
    assert _optional_values(["filter", "--normalize-output", "-3", "a.wav"]) == [
        "filter", "--normalize-output", "-3", "a.wav"]
    assert _optional_values(["filter", "--normalize-output", "-o", "b.wav", "a.wav"]) == [
        "filter", "--normalize-output", "-1", "-o", "b.wav", "a.wav"]
    assert _optional_values(["filter", "--", "--normalize-output"]) == [
        "filter", "--", "--normalize-output"]
