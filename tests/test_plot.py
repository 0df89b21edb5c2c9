"""PNG pictures: valid files of the promised size; a clear error without matplotlib."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest
import scipy.signal

from convcli.errors import ConvcliError, UsageError
from convcli.render.plots import MATRIX_SIZE, WINDOW_SIZE, plot_matrix, plot_window

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND", "the PNG is truncated"
    return struct.unpack(">II", data[16:24])


def test_plot_window_writes_png(tmp_path):
    h = scipy.signal.firwin(101, 4000, window="hann", fs=44100)
    out = tmp_path / "lowpass.png"
    plot_window(h, 44100.0, str(out), title="lowpass 4000 Hz")
    assert png_size(out) == WINDOW_SIZE
    out2 = tmp_path / "hann.png"
    plot_window(scipy.signal.get_window("hann", 300, fftbins=False), None, str(out2))
    assert png_size(out2) == WINDOW_SIZE
    assert not list(tmp_path.glob("*.part"))


def test_plot_matrix_writes_png(tmp_path, rng):
    J = np.zeros((40, 50))
    for i in range(40):
        J[i, i : i + 3] = (0.25, 0.5, -0.25)
    out = tmp_path / "J.png"
    plot_matrix(J, str(out))
    assert png_size(out) == MATRIX_SIZE


def test_refusals(tmp_path):
    with pytest.raises(UsageError, match="PNG"):
        plot_window(np.ones(3), None, str(tmp_path / "w.jpg"))
    with pytest.raises(UsageError, match="2-D"):
        plot_matrix(np.ones(3), str(tmp_path / "J.png"))


def test_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    with pytest.raises(ConvcliError, match="matplotlib") as err:
        plot_window(np.ones(5), None, str(tmp_path / "w.png"))
    assert "convcli[plot]" in err.value.hint
    with pytest.raises(ConvcliError, match="matplotlib"):
        plot_matrix(np.eye(3), str(tmp_path / "J.png"))
    assert not (tmp_path / "w.png").exists()


def test_window_plot_alone_prints_no_coefficients(cli_fast, tmp_path):
    """--plot (like --response) replaces the default text output; -o - brings it back."""
    alone = cli_fast("window", "hann", "--size", "5", "--plot", tmp_path / "w.png", check=True)
    assert alone.stdout == b"" and (tmp_path / "w.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    both = cli_fast("window", "hann", "--size", "5", "--plot", tmp_path / "w2.png", "-o", "-",
                    check=True)
    assert [float(v) for v in both.stdout.split()] == [0.0, 0.25, 0.5, 0.25, 0.0]
