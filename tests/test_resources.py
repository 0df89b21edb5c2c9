"""Memory checks refuse before allocating, with both sizes and a hint."""

from __future__ import annotations

import numpy as np
import pytest

from convcli.core.spec import ConvSpec
from convcli.errors import ResourceError, UsageError
from convcli.plan.memory import (
    LIMIT_ENV,
    available_memory,
    check_allocation,
    check_filter_memory,
    conv_bytes,
    parse_size,
)


def test_parse_size():
    assert parse_size("512M") == 512 * 2**20
    assert parse_size("2GiB") == 2 * 2**30
    assert parse_size("1000") == 1000
    with pytest.raises(UsageError):
        parse_size("lots")


def test_available_memory_is_known_and_capped_by_the_environment(monkeypatch):
    room = available_memory()
    assert room is not None and room > 0
    monkeypatch.setenv(LIMIT_ENV, "1M")
    assert available_memory() == 2**20


def test_check_allocation_names_sizes_and_hint():
    check_allocation(2**20, "a small buffer", limit=2**21)
    with pytest.raises(ResourceError) as info:
        check_allocation(3 * 2**30, "a dense Jacobian", "use --format banded", limit=2**30)
    assert "3.0 GiB" in info.value.message and "1.0 GiB" in info.value.message
    assert info.value.hint == "use --format banded" and info.value.exit_code == 1


def test_conv_bytes_counts_input_padded_output_and_fft_buffers():
    spec = ConvSpec(mode="full")
    direct = conv_bytes(2, 3, 1000, 3, 11, spec, "direct", 4)
    assert direct == 4 * (2 * 3 * (1000 + 1020) + 2 * 3 * 1010)
    assert conv_bytes(2, 3, 1000, 3, 11, spec, "fft", 4) > 2 * direct


def test_filter_of_a_huge_signal_is_refused_before_allocating(monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "64G")
    huge = np.broadcast_to(np.float32(0), (1, 2, 10**11))  # 800 GB that does not exist
    with pytest.raises(ResourceError, match="filtering the signal whole needs about"):
        check_filter_memory([huge], np.ones(31), ConvSpec(), "auto", "use --block")
    small = np.zeros((1, 2, 1000), np.float32)
    check_filter_memory([small], np.ones(31), ConvSpec(), "auto", "use --block")
