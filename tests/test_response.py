"""Measured response figures against scipy.signal.freqz (and Harris's window table)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.signal
from scipy.optimize import brentq

from convcli.core.response import dense_nfft, gain_at, measure, spectrum

RATE = 44100.0
LVL3, LVL6 = 10 ** (-3 / 20), 10 ** (-6 / 20)


def freqz_gain(h, f_hz, rate=RATE):
    """|H| at the frequencies f (Hz), evaluated by scipy.signal.freqz."""
    _, H = scipy.signal.freqz(h, worN=np.atleast_1d(f_hz), fs=rate)
    return np.abs(H)


def test_spectrum_equals_freqz(rng):
    h = rng.standard_normal(37)
    f, mag = spectrum(h, 4096)
    assert f.shape == mag.shape == (2049,)
    pick = np.arange(0, 2049, 61)
    _, H = scipy.signal.freqz(h, worN=2 * np.pi * f[pick])
    np.testing.assert_allclose(mag[pick], np.abs(H), rtol=1e-10, atol=1e-12)
    assert gain_at(h, 0.123) == pytest.approx(abs(scipy.signal.freqz(h, worN=[2 * np.pi * 0.123])[1][0]))
    assert dense_nfft(31) == 1 << 16 and dense_nfft(5000) == 1 << 19


@pytest.mark.parametrize("window", ["hann", "hamming", "blackman", "boxcar", ("kaiser", 8.0),
                                    "bartlett", ("tukey", 0.5)])
@pytest.mark.parametrize("size", [16, 31])
def test_window_figures_vs_freqz(window, size):
    w = scipy.signal.get_window(window, size, fftbins=False)
    w = w / w.sum()
    r = measure(w, RATE)
    assert r.dc_gain == pytest.approx(1.0) and r.taps == size and r.unit == "Hz"
    # bandwidths: |H| from freqz at half the reported width is -3 / -6 dB
    assert freqz_gain(w, r.bandwidth_3db / 2)[0] == pytest.approx(LVL3, abs=2e-5)
    assert freqz_gain(w, r.bandwidth_6db / 2)[0] == pytest.approx(LVL6, abs=2e-5)
    assert r.bandwidth_3db_bins == pytest.approx(r.bandwidth_3db * size / RATE)
    # peak side lobe: the highest freqz value beyond the first null, found on scipy's own grid
    f, H = scipy.signal.freqz(w, worN=1 << 16, fs=RATE)
    g = np.abs(H)
    null = int(np.argmax(np.diff(g) > 0))  # first index where |H| starts to rise
    assert r.first_null == pytest.approx(f[null], abs=2 * RATE / (1 << 17))
    assert r.peak_sidelobe_db == pytest.approx(20 * np.log10(g[null:].max()), abs=0.01)


@pytest.mark.parametrize("window,bw3,bw6,psl,tol", [
    ("hann", 1.44, 2.00, -31.5, 0.1),      # Harris 1978, table 1
    ("hamming", 1.30, 1.81, -43.0, 0.4),   # Harris rounds -42.7 to -43
    ("boxcar", 0.89, 1.21, -13.3, 0.1),
])
def test_harris_table(window, bw3, bw6, psl, tol):
    w = scipy.signal.get_window(window, 1024, fftbins=True)
    r = measure(w)
    assert r.unit == "cycles/sample" and r.rate is None
    assert r.bandwidth_3db_bins == pytest.approx(bw3, abs=0.01)
    assert r.bandwidth_6db_bins == pytest.approx(bw6, abs=0.01)
    assert r.peak_sidelobe_db == pytest.approx(psl, abs=tol)


def test_blackman_bandwidth_by_root_finding():
    """Harris lists 1.68/2.35 bins for Blackman; the exact roots are 1.64/2.30."""
    n = 1024
    w = scipy.signal.get_window("blackman", n, fftbins=True)
    r = measure(w)
    for level, got in ((LVL3, r.bandwidth_3db_bins), (LVL6, r.bandwidth_6db_bins)):
        # b: two-sided width in bins, so |H| is evaluated at b/2 bins = b/(2n) cycles/sample
        root = brentq(lambda b, lv=level: freqz_gain(w, b / (2 * n), rate=1.0)[0] / w.sum() - lv,
                      0.1, 3)
        assert got == pytest.approx(root, abs=1e-3)


@pytest.mark.parametrize("band,cutoffs", [("lowpass", [4000.0]), ("highpass", [4000.0]),
                                          ("bandpass", [1000.0, 6000.0]),
                                          ("bandstop", [1000.0, 6000.0])])
def test_designed_filter_figures_vs_freqz(band, cutoffs):
    transition = 1000.0
    h = scipy.signal.firwin(201, cutoffs if len(cutoffs) > 1 else cutoffs[0],
                            window=("kaiser", 7.0), pass_zero=band, fs=RATE)
    r = measure(h, RATE, band=band, cutoffs=cutoffs, transition=transition)
    assert r.band == band and r.reference_gain == pytest.approx(1.0)
    assert len(r.edges_6db) == len(cutoffs) == len(r.edges_3db)
    # the -6 dB edges are where freqz says |H| = 0.501, close to firwin's cutoffs
    np.testing.assert_allclose(freqz_gain(h, r.edges_6db), LVL6, atol=2e-5)
    np.testing.assert_allclose(freqz_gain(h, r.edges_3db), LVL3, atol=2e-5)
    np.testing.assert_allclose(r.edges_6db, cutoffs, atol=15.0)
    nyq = RATE / 2
    width = {"lowpass": r.edges_3db[0], "highpass": nyq - r.edges_3db[0]}.get(
        band, r.edges_3db[-1] - r.edges_3db[0])
    assert r.bandwidth_3db == pytest.approx(width)
    # ripple and attenuation on a freqz grid, outside cutoff ± transition/2
    f = np.linspace(0, nyq, 20001)
    g = freqz_gain(h, f)
    below = np.searchsorted(cutoffs, f, side="right")
    ideal = (below % 2 == 0) == (band in ("lowpass", "bandstop"))
    away = np.all(np.abs(f[:, None] - np.array(cutoffs)) >= transition / 2, axis=1)
    passband, stopband = g[ideal & away], g[~ideal & away]
    ripple = 20 * np.log10(passband.max() / passband.min())
    attenuation = -20 * np.log10(stopband.max())
    assert r.passband_ripple_db == pytest.approx(ripple, abs=2e-4)
    assert r.stopband_attenuation_db == pytest.approx(attenuation, abs=0.05)
    assert r.transition == transition
    assert r.peak_sidelobe_db <= -r.stopband_attenuation_db + 0.05


def test_designed_without_transition_uses_first_nulls():
    h = scipy.signal.firwin(101, 4000.0, window="hann", fs=RATE)
    r = measure(h, RATE, band="lowpass", cutoffs=[4000.0])
    # the first stopband null of a windowed sinc lies about half the window's main lobe
    # (2 bins for hann: 2 * 44100 / 101 = 873 Hz) above the cutoff
    assert 600 < r.transition / 2 < 1000
    assert r.stopband_attenuation_db == pytest.approx(-r.peak_sidelobe_db)
    assert r.stopband_attenuation_db > 40 and r.passband_ripple_db < 0.2


def test_degenerate_kernels():
    r = measure(np.array([1.0, -1.0]))  # sums to zero: nothing to measure at DC
    assert r.dc_gain == 0 and r.bandwidth_3db is None and r.notes
    r = measure(scipy.signal.get_window(("gaussian", 0.6), 5, fftbins=False))
    assert r.peak_sidelobe_db is None and "no side lobes" in r.notes[0]
    d = measure(np.ones(4), RATE).to_dict()
    assert d["rate"] == RATE and d["dc_gain"] == 4.0 and isinstance(d["notes"], list)


def test_cli_window_response_json_and_plot(cli_fast, tmp_path):
    """`window NAME --lowpass ... --response --json --plot`: the design, its figures and a PNG."""
    import json
    import struct

    png = tmp_path / "lp.png"
    proc = cli_fast("window", "hann", "--size", "101", "--lowpass", "4000", "--rate", "44100",
                    "--response", "--json", "--plot", png)
    assert proc.returncode == 0, proc.stderr.decode()
    summary = json.loads(proc.stdout)
    h = np.array(summary["coefficients"])
    np.testing.assert_allclose(h, scipy.signal.firwin(101, 4000, window="hann", fs=RATE),
                               rtol=1e-12, atol=1e-15)
    r = summary["response"]
    assert r["dc_gain"] == pytest.approx(abs(freqz_gain(h, 0.0)[0]))
    assert freqz_gain(h, r["edges_6db"][0])[0] == pytest.approx(LVL6, abs=2e-5)
    assert r["bandwidth_3db"] == pytest.approx(r["edges_3db"][0])
    assert r["stopband_attenuation_db"] > 40 and summary["design"]["taps"] == 101
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24]) == (900, 640)
    # the text form: one "label  value" line per figure, on stdout
    proc = cli_fast("window", "hamming", "--size", "64", "--response")
    lines = proc.stdout.decode().splitlines()
    assert proc.returncode == 0 and lines[0].split() == ["taps", "64"]
    assert any(line.startswith("peak side lobe") for line in lines)


# --- weak designs warn ---------------------------------------------------------------------------
def freqz_bands(h, band, cutoffs, rate, transition=None):
    """(stopband attenuation dB, passband ripple dB) from scipy.signal.freqz on a dense grid,
    the transition bands being ±transition/2 around each cutoff, else cutoff to first null."""
    f, H = scipy.signal.freqz(h, worN=1 << 16, fs=rate)
    mag = np.abs(H)
    from convcli.core.fir import BANDS

    count, pass_zero = BANDS[band]
    ideal = (np.searchsorted(np.asarray(cutoffs), f, side="right") % 2 == 0) == pass_zero
    ref = mag[0] if pass_zero else (mag[-1] if count == 1 else
                                    np.abs(scipy.signal.freqz(h, worN=[sum(cutoffs) / 2], fs=rate)[1][0]))
    keep = np.ones_like(f, dtype=bool)
    if transition is not None:
        for c in cutoffs:
            keep &= np.abs(f - c) >= transition / 2
    else:  # to the first local minimum on the stopband side of each cutoff
        for i, c in enumerate(cutoffs):
            j = int(np.argmin(np.abs(f - c)))
            step = 1 if (i % 2 == 0) == pass_zero else -1
            while 0 < j + step < len(mag) - 1 and mag[j + step] < mag[j]:
                j += step
            keep &= np.abs(f - c) >= abs(f[j] - c)
    stop, passed = mag[~ideal & keep] / ref, mag[ideal & keep] / ref
    return -20 * np.log10(stop.max()), 20 * np.log10(passed.max() / passed.min())


@pytest.mark.parametrize("band, cutoffs, rate, size, warns", [
    ("highpass", (200.0,), 22050.0, 31, True),       # 2.7 dB of attenuation
    ("bandpass", (300.0, 3400.0), 22050.0, 31, True),  # 4.5 dB, 2.7 dB of ripple
    ("lowpass", (4000.0,), 44100.0, 101, False),
    ("bandstop", (1000.0, 3000.0), 16000.0, 129, False),
])
def test_weak_designs_warn_with_advice_that_works(band, cutoffs, rate, size, warns):
    from convcli.core import fir
    from convcli.core.response import design_weakness

    made = fir.design(fir.FirRequest(band, cutoffs), rate, size=size)
    attenuation, ripple = freqz_bands(made.coefficients, band, cutoffs, rate)
    measured = measure(made.coefficients, rate, band=band, cutoffs=list(cutoffs))
    assert measured.stopband_attenuation_db == pytest.approx(attenuation, abs=0.05)
    assert measured.passband_ripple_db == pytest.approx(ripple, abs=0.05)
    assert (attenuation < 20 or ripple > 1) == warns
    said = design_weakness(made)
    assert (said is not None) == warns
    if not warns:
        return
    assert f"{attenuation:.1f} dB of stopband attenuation" in said
    transition = float(re.search(r"--transition (\S+)", said)[1])
    taps = int(re.search(r"--size (\d+)", said)[1])
    by_kaiser = fir.design(fir.FirRequest(band, cutoffs, transition=transition), rate)
    by_size = fir.design(fir.FirRequest(band, cutoffs), rate, size=taps)
    for better, width in ((by_kaiser, transition), (by_size, None)):
        attenuation, ripple = freqz_bands(better.coefficients, band, cutoffs, rate, width)
        assert attenuation >= 20 and ripple <= 1, (better.describe(), attenuation, ripple)
        assert design_weakness(better) is None


def test_a_weak_design_warns_once_on_the_command_line(cli_fast, tmp_path):
    from conftest import SAMPLES

    proc = cli_fast("filter", SAMPLES / "chord.wav", "--highpass", "200", "-o", tmp_path / "o.wav")
    warnings = [line for line in proc.stderr.decode().splitlines() if line.startswith("warning:")]
    assert proc.returncode == 0 and len(warnings) == 1
    assert "--transition" in warnings[0] and "--size" in warnings[0]
    quiet = cli_fast("window", "hann", "--bandpass", "300:3400", "--rate", "22050", "-o",
                     tmp_path / "w.txt", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == b""
    told = cli_fast("window", "hann", "--bandpass", "300:3400", "--rate", "22050", "-o",
                    tmp_path / "w.txt")
    assert "4.5 dB of stopband attenuation and 2.7 dB of passband ripple" in told.stderr.decode()


def test_a_design_flat_to_nyquist_is_weak_too():
    """3 taps of hann are one non-zero tap: no stopband anywhere, which filters nothing."""
    from convcli.core import fir
    from convcli.core.response import design_weakness

    made = fir.design(fir.FirRequest("lowpass", (100.0,)), 44100.0, size=3)
    _, H = scipy.signal.freqz(made.coefficients, worN=1 << 12, fs=44100.0)
    assert np.ptp(np.abs(H)) < 1e-12  # flat: a delay, not a filter
    said = design_weakness(made)
    assert said is not None and "--transition 100" in said
