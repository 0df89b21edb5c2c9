"""The range of every number a user gives, in one table, checked once where it comes in.

The CLI parses each numeric flag through ``parse`` (a bad value ends as one ``error:`` line,
exit 2) and the core's constructors (``ConvSpec``, ``fir.FirRequest``, the level options,
``--rate``) call ``check`` with the same table, so the Python API refuses what the command
line refuses. The limits are what the data can carry, not taste: a sample rate a WAV or FLAC
header holds, a gain that leaves a full-scale float32 sample finite and above its smallest
normal number, the attenuation float64 coefficients can reach. Whether a size also fits in
memory is asked later, when the sizes of the data are known (``plan.memory``).

    >>> parse("size", "1e3")
    1000
    >>> parse("gain", "1e9")
    Traceback (most recent call last):
    ...
    convcli.errors.UsageError: --gain 1e9 is out of range: it takes a number of dB from -200 to 200 (hint: ±200 dB is a factor of 10¹⁰; to set a peak level use --normalize-output DBFS)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from convcli.errors import ConvcliError, UsageError

#: the largest count of samples, frames, steps or groups a flag takes: 2³¹ − 1, what every
#: array library indexes without overflow and more than any signal held in memory needs
MAX_COUNT = 2**31 - 1
#: the largest tap count of a window, a design or a kernel file (400 MB of float64)
MAX_TAPS = 50_000_000
#: the largest sample rate: a WAV/FLAC header holds a 32-bit signed rate
MAX_RATE = 2**31 - 1


@dataclass(frozen=True)
class Limit:
    """The values one flag takes: ``low`` … ``high`` (``low`` excluded when ``above``)."""

    low: float
    high: float
    whole: bool = False  # an integer
    unit: str = ""
    hint: str = ""
    above: bool = False  # low itself is refused (a rate of 0 Hz)

    def describe(self) -> str:
        """``a whole number from 1 to 2,147,483,647``, ``a number of Hz above 0, up to ...``."""
        kind = "a whole number" if self.whole else "a number"
        unit = f" of {self.unit}" if self.unit else ""
        low, high = _number_text(self.low), _number_text(self.high)
        if self.above:
            return f"{kind}{unit} above {low}, up to {high}"
        return f"{kind}{unit} from {low} to {high}"

    def allows(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return (self.low < value if self.above else self.low <= value) and value <= self.high


_COUNT_HINT = "2,147,483,647 is the most any array library indexes"
LIMITS: dict[str, Limit] = {
    "size": Limit(1, MAX_TAPS, True, "taps", "a kernel of 50 million taps is 400 MB; "
                  "longer ones are refused before anything is allocated"),
    "stride": Limit(1, MAX_COUNT, True, hint=_COUNT_HINT),
    "dilation": Limit(1, MAX_COUNT, True, hint=_COUNT_HINT),
    "groups": Limit(1, MAX_COUNT, True, hint="--groups divides the channels"),
    "block": Limit(1, MAX_COUNT, True, "frames", "a block is held in memory; 524288 frames "
                   "(the default) is about 11 s at 48 kHz"),
    "length": Limit(1, MAX_COUNT, True, "samples", _COUNT_HINT),
    "seed": Limit(0, 2**64 - 1, True, hint="a seed is a whole number ≥ 0 of at most 64 bits"),
    "batch-files": Limit(1, 1 << 20, True, "files", "a batch is read whole before it is "
                         "filtered; 256 (the default) is plenty"),
    "workers": Limit(1, 1024, True, "workers", "one worker process per core is the most that "
                     "helps; a larger cluster is one started by hand (--scheduler)"),
    "rate": Limit(0, MAX_RATE, False, "Hz", "2,147,483,647 Hz is the most a WAV or FLAC "
                  "header holds", above=True),
    "gain": Limit(-200, 200, False, "dB", "±200 dB is a factor of 10¹⁰; to set a peak level "
                  "use --normalize-output DBFS"),
    "normalize-output": Limit(-200, 200, False, "dBFS", "0 dBFS is full scale; −1 is the "
                              "default"),
    "lowpass": Limit(0, MAX_RATE // 2, False, "Hz", "a cutoff lies between 0 and half the "
                     "sample rate", above=True),
    "highpass": Limit(0, MAX_RATE // 2, False, "Hz", "a cutoff lies between 0 and half the "
                      "sample rate", above=True),
    "bandpass": Limit(0, MAX_RATE // 2, False, "Hz", "the edges lie between 0 and half the "
                      "sample rate", above=True),
    "bandstop": Limit(0, MAX_RATE // 2, False, "Hz", "the edges lie between 0 and half the "
                      "sample rate", above=True),
    "transition": Limit(0, MAX_RATE // 2, False, "Hz", "a transition band is narrower than "
                        "half the sample rate", above=True),
    "attenuation": Limit(8, 300, False, "dB", "Kaiser's formulas start at 8 dB, and float64 "
                         "coefficients cannot reach more than about 300 dB"),
}


def _number_text(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,g}"


def check(name: str, value, error: type[ConvcliError] = UsageError, text: str | None = None):
    """``value`` when it is in ``LIMITS[name]``; else ``error`` naming the flag, what was given
    (``text``: as typed) and the range. Returns ints for whole-number limits."""
    limit = LIMITS[name]
    shown = text if text is not None else (f"{value:g}" if isinstance(value, float) else
                                           repr(value))
    number = value
    if limit.whole:
        if isinstance(value, bool) or not isinstance(value, int):
            if not (isinstance(value, float) and value.is_integer() and abs(value) < 2**63):
                raise error(f"--{name} {shown} is not a whole number: it takes "
                            f"{limit.describe()}", limit.hint or None)
            number = int(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"--{name} {shown} is not a number: it takes {limit.describe()}",
                    limit.hint or None)
    if not limit.allows(float(number)):
        raise error(f"--{name} {shown} is out of range: it takes {limit.describe()}",
                    limit.hint or None)
    return number


def parse(name: str, text, error: type[ConvcliError] = UsageError):
    """A flag's value as typed (or already a number) -> the checked number.

    Whole numbers may be written as floats that are whole (``--length 1e6``).
    """
    if not isinstance(text, str):
        return check(name, text, error)
    raw = text.strip()
    limit = LIMITS[name]
    try:
        value: int | float = int(raw) if limit.whole else float(raw)
    except ValueError:
        try:
            value = float(raw)
        except ValueError:
            kind = "a whole number" if limit.whole else "a number"
            raise error(f"--{name} {text!r} is not {kind}: it takes {limit.describe()}",
                        limit.hint or None) from None
    return check(name, value, error, text=text)
