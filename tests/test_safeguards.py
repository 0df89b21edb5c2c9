"""The pieces behind the hardening, one by one: the limits table in the Python API, block-wise
levels against numpy, every libsndfile error code in words, --no-clobber's atomic refusal,
the window catalogue, the Jacobian's picture and its count of non-zero diagonals."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import soundfile as sf
from conftest import SAMPLES

from convcli.core import limits
from convcli.errors import ConvcliError, OutputError, UsageError


# --- limits: the API refuses what the command line refuses ----------------------------------------
@pytest.mark.parametrize("make", [
    lambda: __import__("convcli.core.spec", fromlist=["ConvSpec"]).ConvSpec(stride=2**40),
    lambda: __import__("convcli.core.spec", fromlist=["ConvSpec"]).ConvSpec(dilation=True),
    lambda: __import__("convcli.core.fir", fromlist=["FirRequest"]).FirRequest(
        "lowpass", (1000.0,), transition=100.0, attenuation=1e6),
    lambda: __import__("convcli.core.fir", fromlist=["FirRequest"]).FirRequest(
        "lowpass", (float("nan"),)),
    lambda: __import__("convcli.core.levels", fromlist=["x"]).check_level_options(1e9, None),
    lambda: __import__("convcli.core.windows", fromlist=["x"]).window("hann", 10**12),
    lambda: __import__("convcli.core.windows", fromlist=["x"]).window("kaiser", 8, 1e3),
])
def test_the_api_checks_the_same_limits(make):
    with pytest.raises(UsageError):
        make()


def test_filter_file_refuses_a_gain_out_of_range(tmp_path):
    from convcli import filter_file

    with pytest.raises(UsageError, match="--gain 1e\\+09 is out of range"):
        filter_file(SAMPLES / "chord.wav", tmp_path / "o.wav", gain=1e9)
    assert list(tmp_path.iterdir()) == []


def test_limits_parse_whole_numbers_written_as_floats():
    assert limits.parse("length", "1e6") == 1_000_000 and isinstance(limits.parse("length", "1e6"), int)
    assert limits.parse("gain", "-6") == -6.0
    for name, text in (("size", "2.5"), ("size", "0"), ("rate", "0"), ("rate", "inf"),
                       ("seed", str(2**64)), ("attenuation", "7.9")):
        with pytest.raises(UsageError, match=f"--{name} "):
            limits.parse(name, text)


# --- levels block by block ---------------------------------------------------------------------
def test_level_meter_in_blocks_equals_numpy_on_the_whole(rng):
    from convcli.core.levels import LevelMeter, levels

    x = rng.uniform(-1.2, 1.2, (3, 10_001))
    x[1, 17] = np.nan
    x[2, 5000] = -np.inf
    meter = LevelMeter(3)
    for start in range(0, x.shape[1], 977):
        meter.add(x[:, start : start + 977])
    got, whole = meter.result(), levels(x)
    finite = np.where(np.isfinite(x), x, 0.0)
    counts = np.isfinite(x).sum(axis=1)
    np.testing.assert_allclose([c["rms"] for c in got["channel"]],
                               np.sqrt((finite**2).sum(axis=1) / counts), rtol=1e-12)
    np.testing.assert_allclose([c["dc"] for c in got["channel"]], finite.sum(axis=1) / counts,
                               rtol=1e-12, atol=1e-15)
    assert [c["peak"] for c in got["channel"]] == list(np.abs(finite).max(axis=1))
    assert [c["full_scale"] for c in got["channel"]] == list((np.abs(finite) >= 1).sum(axis=1))
    assert got["nonfinite"] == 2 == whole["nonfinite"]
    assert got["peak"] == whole["peak"] and got["rms"] == pytest.approx(whole["rms"], rel=1e-12)


def test_info_of_a_file_equals_info_of_its_bytes(tmp_path):
    from convcli.io.describe import describe, describe_file

    for name in ("chord.wav", "batch.npy", "tc.npy"):
        data = (SAMPLES / name).read_bytes()
        on_disk, in_memory = describe_file(str(SAMPLES / name)), describe(data, str(SAMPLES / name))
        assert on_disk.keys() == in_memory.keys()
        for key, value in in_memory.items():
            if isinstance(value, float):
                assert on_disk[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
            elif key != "channel":
                assert on_disk[key] == value, key
    cut = tmp_path / "cut.wav"
    cut.write_bytes((SAMPLES / "chord.wav").read_bytes()[:20_000])
    with pytest.raises(ConvcliError, match="truncated"):
        describe_file(str(cut))


# --- libsndfile's errors in words ---------------------------------------------------------------
def test_every_libsndfile_error_code_reads_as_one_clean_line():
    from convcli.io.formats import LIBSNDFILE_WORDS, libsndfile_message

    noise = "Error opening <_io.BytesIO object at 0x7f3a2b1c>: "
    seen = set()
    for code in range(1, 200):
        text = libsndfile_message(sf.LibsndfileError(code, noise))
        assert text and "\n" not in text and "<_io" not in text and "0x7f" not in text, code
        assert not text.lower().startswith("error") and not text.endswith("."), (code, text)
        seen.add(text)
    assert len(seen) > 150  # each code its own words
    assert libsndfile_message(sf.LibsndfileError(158, noise)) == LIBSNDFILE_WORDS[158]
    assert "beyond what libsndfile takes" in libsndfile_message(OverflowError("int too large"))


def test_a_corrupt_flac_read_whole_says_what_libsndfile_found(tmp_path):
    from convcli.io.signals import read_signal

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((44100, 2)), 44100, format="FLAC")
    data = bytearray(buffer.getvalue())
    data[8:40] = bytes(32)  # the STREAMINFO block
    (tmp_path / "bad.flac").write_bytes(bytes(data))
    with pytest.raises(ConvcliError) as info:
        read_signal(str(tmp_path / "bad.flac"))
    assert info.value.line().startswith("cannot decode") and "<_io" not in info.value.line()


# --- --no-clobber: refused before work, and again when the output is put in place ----------------
def test_no_clobber_refuses_an_output_made_meanwhile(tmp_path):
    from convcli.io.atomic import AtomicFile, keep_existing

    target = tmp_path / "o.npy"
    with keep_existing():
        pending = AtomicFile(str(target))
        pending.handle.write(b"new")
        target.write_bytes(b"made by someone else meanwhile")
        with pytest.raises(OutputError, match="exists and --no-clobber keeps it"):
            pending.commit()
    assert target.read_bytes() == b"made by someone else meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npy"]


def test_no_clobber_several_outputs_appear_together_or_not_at_all(tmp_path):
    from convcli.io.atomic import atomic_outputs, keep_existing

    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    with keep_existing(), pytest.raises(OutputError), atomic_outputs([str(a), str(b)]) as (ha, hb):
        ha.write(b"a")
        hb.write(b"b")
        b.write_bytes(b"someone else's")
    assert not a.exists() and b.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.npy"]
    with atomic_outputs([str(a), str(b)]) as (ha, hb):  # without it: replaced whole
        ha.write(b"a")
        hb.write(b"b")
    assert a.read_bytes() == b"a" and b.read_bytes() == b"b"


# --- window --list ------------------------------------------------------------------------------
def test_window_list_is_the_registry(cli_fast):
    from convcli.core.windows import ALIASES, WINDOWS

    text = cli_fast("window", "--list", check=True).stdout.decode().splitlines()
    assert [line.split()[0].split(":")[0] for line in text] == list(WINDOWS)
    listed = json.loads(cli_fast("window", "--list", "--json", check=True).stdout)["windows"]
    for row in listed:
        kind = WINDOWS[row["name"]]
        assert (row["param"], row["default"]) == (kind.param, kind.default)
        assert set(row["aliases"]) == {a for a, t in ALIASES.items() if t == row["name"]}
    assert "tukey:ALPHA     alpha, default 0.5 (scipy: tukey)" in text


# --- the Jacobian's summary and picture ----------------------------------------------------------
def test_jacobian_counts_the_diagonals_of_non_zero_taps(cli_fast):
    import scipy.signal

    proc = cli_fast("jacobian", "--length", "12", "--window", "hann", "--size", "5", "--json",
                    check=True)
    summary = json.loads(proc.stdout)
    taps = scipy.signal.get_window("hann", 5, fftbins=False)
    J = np.array([[taps[i - j + 2] if 0 <= i - j + 2 < 5 else 0 for j in range(12)]
                  for i in range(12)])
    nonzero = sorted({j - i for i, j in zip(*np.nonzero(J))})
    assert nonzero == [-1, 0, 1]
    assert summary["formula"][1].startswith(f"banded: {len(nonzero)} non-zero diagonals at "
                                            f"j − i ∈ {{-1, 0, 1}}")


def test_jacobian_picture_names_its_axes_and_colour_bar(rng):
    pytest.importorskip("matplotlib")
    from convcli.render.plots import matrix_figure

    fig, _ = matrix_figure(rng.standard_normal((6, 9)), wrt="input", origin=(4, 0))
    main, bar = fig.axes
    assert main.get_xlabel() == "j: input sample x[j]"
    assert main.get_ylabel() == "i: output sample y[i]"
    assert bar.get_ylabel() == "J[i, j] = ∂y[i]/∂x[j]"
    assert main.get_ylim() == (9.5, 3.5)  # rows 4…9 of the block, numbered as in J
    fig, _ = matrix_figure(rng.standard_normal((6, 3)), wrt="kernel")
    assert fig.axes[0].get_xlabel() == "j: tap w[j]"
