"""Formats: what a file is (sniffed by content), what an output is written as, and integer PCM.

- ``sniff``: the format of bytes, by content: NPY by its magic, everything else by asking
  libsndfile (``soundfile``), so every format the installed libsndfile reads is read
  (``soundfile.available_formats()``: WAV, FLAC, OGG, MP3, AIFF, CAF, W64, ...);
  ``sniff_format`` is the magic-bytes shortcut for the formats convcli reads itself.
- ``AUDIO_FORMATS`` / ``format_from_path`` / ``writable``: the formats an output can be
  written as, the one an output name asks for, and whether libsndfile can write it with a
  given rate and channel count (``tone.opus`` at 44.1 kHz cannot be Opus).
- ``audio_dtype`` and ``choose_subtype``: the one rule for the precision audio is read in and
  the subtype an output is written with, for whole files and streams alike.
- ``to_pcm``: floats to integer PCM, rounded to nearest and clamped, with ``WriteReport`` and
  the ``--clip`` policy (``clip_verdict``) saying what clipped.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convcli.errors import OutputError, UsageError

#: audio formats an output can be: our name -> (libsndfile's major format, the subtype the
#: name implies or None for the input's/the format's default)
AUDIO_FORMATS = {
    "wav": ("WAV", None), "flac": ("FLAC", None), "ogg": ("OGG", None),
    "opus": ("OGG", "OPUS"), "mp3": ("MP3", None), "aiff": ("AIFF", None), "au": ("AU", None),
    "caf": ("CAF", None), "w64": ("W64", None), "rf64": ("RF64", None),
}
FORMATS = (*AUDIO_FORMATS, "npy")

#: our format name -> soundfile's major format
SOUNDFILE_FORMATS = {name: major for name, (major, _) in AUDIO_FORMATS.items()}

#: output name extensions -> format
EXTENSIONS = {"wav": "wav", "wave": "wav", "flac": "flac", "ogg": "ogg", "oga": "ogg",
              "opus": "opus", "mp3": "mp3", "aif": "aiff", "aiff": "aiff", "aifc": "aiff",
              "au": "au", "snd": "au", "caf": "caf", "w64": "w64", "rf64": "rf64", "npy": "npy"}

#: integer PCM subtypes: full-scale value and the container dtype soundfile is given
#: (libsndfile keeps the top bits of the container, so 24-bit goes in int32 << 8, 8-bit in int16 << 8)
PCM = {
    "PCM_S8": (2**7, np.int16, 8),
    "PCM_U8": (2**7, np.int16, 8),
    "PCM_16": (2**15, np.int16, 0),
    "PCM_24": (2**23, np.int32, 8),
    "PCM_32": (2**31, np.int32, 0),
}

#: the most channels libsndfile writes in each format (WAV: its SF_MAX_CHANNELS; FLAC: the
#: format's 8; OGG Vorbis: 255, and libsndfile 1.2 crashes on more instead of refusing)
MAX_CHANNELS = {"wav": 1024, "flac": 8, "ogg": 255}


def check_channels(out_format: str, channels: int, name: str) -> None:
    """Refuse, before any work, an output with more channels than its format holds."""
    most = MAX_CHANNELS.get(out_format)
    if most is not None and channels > most:
        raise OutputError(f"{name} would have {channels:,} channels, and {out_format.upper()} "
                          f"holds at most {most:,}; nothing computed",
                          "write .npy (any number of channels), or use a kernel with fewer "
                          "output channels")


def sniff_format(head: bytes) -> str | None:
    """Format from magic bytes, for the formats convcli parses itself or routes by name:
    RIFF/RF64 -> wav, fLaC -> flac, OggS -> ogg, \\x93NUMPY -> npy; None: ask ``sniff``."""
    if head[:4] in (b"RIFF", b"RF64", b"RIFX") and head[8:12] == b"WAVE" or head[:4] == b"RF64":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    return None


def format_name(major: str, subtype: str | None = None) -> str:
    """convcli's name for a libsndfile format: ``WAV``/``WAVEX`` -> wav, ``OGG``/``OPUS`` ->
    opus, else the major format in lower case (aiff, mp3, caf, ...)."""
    if major in ("WAV", "WAVEX"):
        return "wav"
    if major == "OGG" and subtype == "OPUS":
        return "opus"
    return major.lower()


def sniff(data: bytes) -> str | None:
    """The format of a file's bytes (or of its first bytes), by content: ``npy``, or the name
    (``format_name``) of what libsndfile recognises; None when neither does.

    >>> sniff(b"\\x93NUMPY\\x01\\x00"), sniff(b"hello world!")
    ('npy', None)
    """
    if data[:6] == b"\x93NUMPY":
        return "npy"
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OverflowError,
            MemoryError):
        return sniff_format(data[:12])
    return format_name(info.format, info.subtype)


def format_from_path(path: str) -> str | None:
    """``x.WAV`` -> ``wav``, ``x.aif`` -> ``aiff``; None when the extension is not one convcli
    writes."""
    return EXTENSIONS.get(Path(path).suffix.lower().lstrip("."))


def writable(out_format: str, subtype: str | None, rate: float | None,
             channels: int) -> str | None:
    """None when libsndfile writes ``out_format`` with this subtype, rate and channel count,
    else its reason (e.g. Opus only at 8, 12, 16, 24 or 48 kHz). WAV and NPY always are."""
    if out_format in ("npy", "wav") or rate is None:
        return None
    import soundfile as sf

    major, implied = AUDIO_FORMATS[out_format]
    try:
        with sf.SoundFile(io.BytesIO(), "w", int(rate), channels, subtype or implied,
                          format=major):
            pass
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        return libsndfile_message(exc)
    return None


#: libsndfile's error codes (``sf_error_number``) whose own words do not say what happened to
#: a user, in words that do; every other code keeps libsndfile's text, cleaned
LIBSNDFILE_WORDS = {
    1: "not a format libsndfile recognises",
    2: "a system error while libsndfile read or wrote it",
    3: "the file is malformed (its format is supported, its content is not)",
    4: "it uses an encoding libsndfile does not support",
    8: "it holds no data that could be read",
    9: "libsndfile could not open it",
    14: "libsndfile failed (a bad pointer inside it)",
    17: "libsndfile ran out of memory",
    18: "its data is in a format libsndfile does not implement",
    24: ("its header describes no valid signal (a sample rate or channel count of 0, or one "
         "beyond what libsndfile takes)"),
    29: "libsndfile failed (an unspecified internal error)",
    32: "it has no channels",
    33: "it has more channels than libsndfile handles",
    34: "its channel count is invalid",
    40: "it cannot be sought in (libsndfile must seek in this file to read it in blocks)",
    155: "its FLAC header is corrupt",
    158: "the FLAC stream is corrupt (the decoder lost sync)",
    159: "FLAC does not support this sample rate",
    160: "its FLAC stream changes its channel count midway",
    161: "the FLAC decoder failed on it",
    164: "this sample rate triggers a known Vorbis encoder bug on this CPU",
    176: "Opus takes only the rates 8000, 12000, 16000, 24000 and 48000 Hz",
}
#: what soundfile's own checks raise, in words (they come before libsndfile is called)
_PYTHON_WORDS = {
    OverflowError: "a number in it (a sample rate, a length) is beyond what libsndfile takes",
    MemoryError: "not enough memory to decode it",
}


def libsndfile_message(exc: Exception) -> str:
    """One line saying what libsndfile (or soundfile's checks before it) found wrong.

    libsndfile's errors come as ``LibsndfileError`` with a code: the codes a user cannot read
    as they stand get words of their own (``LIBSNDFILE_WORDS``), every other code keeps
    libsndfile's text without its noise (``Error opening <_io.BytesIO object at 0x...>:``,
    ``Error :``, ``Error in WAV file.``). Anything else is said by its type and message.

    >>> import soundfile as sf
    >>> libsndfile_message(sf.LibsndfileError(158, "Error opening <_io.BytesIO object at 0x7f>: "))
    'the FLAC stream is corrupt (the decoder lost sync)'
    >>> libsndfile_message(sf.LibsndfileError(71))
    "in WAV file: no 'data' chunk marker"
    """
    code = getattr(exc, "code", None)
    if isinstance(code, int) and code in LIBSNDFILE_WORDS:
        return LIBSNDFILE_WORDS[code]
    for kind, words in _PYTHON_WORDS.items():
        if isinstance(exc, kind):
            return words
    text = getattr(exc, "error_string", None) if isinstance(code, int) else None
    text = re.sub(r"Error opening <[^>]*>:\s*", "", text or str(exc))
    text = re.sub(r"^Error\s*(:|\.)?\s*", "", " ".join(text.split()))
    text = re.sub(r"^in ([^.,]*? file)[.,]\s*", r"in \1: ", text)  # "in WAV file. No" -> "in WAV file: no"
    text = re.sub(r"(: )([A-Z])(?![A-Z])", lambda m: m[1] + m[2].lower(), text).rstrip(".")
    if not text or text.startswith("No error defined"):
        return f"libsndfile failed (error {code})" if code is not None else type(exc).__name__
    return text[0].lower() + text[1:] if text[1:2].islower() else text


def audio_dtype(subtype: str | None, requested: str = "auto") -> str:
    """The precision audio of ``subtype`` is read in: ``requested``, or with ``auto`` float64
    where float32 would lose bits (32-bit integer and double samples), else float32.

    >>> audio_dtype("PCM_16"), audio_dtype("PCM_32"), audio_dtype("PCM_32", "float32")
    ('float32', 'float64', 'float32')
    """
    if requested != "auto":
        return requested
    return "float64" if subtype in ("PCM_32", "DOUBLE") else "float32"


def choose_subtype(out_format: str, requested: str | None = None, *,
                   source_format: str | None = None,
                   source_subtype: str | None = None) -> str | None:
    """The soundfile subtype for an audio output (None for NPY).

    ``--subtype`` wins; else the input's subtype when the output format has it (WAV keeps
    PCM_16/24/FLOAT...); NPY input (or none) becomes FLOAT in WAV; else soundfile's default.

    >>> choose_subtype("wav", source_format="wav", source_subtype="PCM_24")
    'PCM_24'
    >>> choose_subtype("wav", source_format="npy"), choose_subtype("npy")
    ('FLOAT', None)
    """
    if out_format == "npy":
        if requested:
            raise UsageError("--subtype applies to audio output, not NPY")
        return None
    import soundfile as sf

    major, implied = AUDIO_FORMATS[out_format]
    if requested:
        requested = requested.upper()
        if not sf.check_format(major, requested):
            allowed = ", ".join(sf.available_subtypes(major))
            raise UsageError(f"--subtype {requested} is not available for {major}", f"use one of {allowed}")
        return requested
    if implied:
        return implied
    if source_subtype and sf.check_format(major, source_subtype):
        return source_subtype
    if out_format == "wav" and source_format in (None, "npy"):
        return "FLOAT"
    return sf.default_subtype(major)


@dataclass
class WriteReport:
    """What happened on the way out: clipping of integer PCM, where it went."""

    path: str
    format: str
    subtype: str | None
    clipped: int = 0  # samples clamped to the integer range
    peak: float = 0.0  # largest |sample| before clamping, full scale = 1.0

    @property
    def safe_gain_db(self) -> float | None:
        """The gain (dB, ≤ 0, rounded down to 0.1 dB) that would avoid the clipping; None if
        nothing clipped.

        >>> WriteReport("o.wav", "wav", "PCM_16", clipped=3, peak=1.2).safe_gain_db
        -1.6
        """
        if not self.clipped or self.subtype not in PCM or not self.peak > 0:
            return None
        scale = PCM[self.subtype][0]
        return math.floor(200 * math.log10((scale - 1) / (scale * self.peak))) / 10

#: ``--clip``: what to do when integer PCM output would clip
CLIP_POLICIES = ("warn", "error", "clamp")

def clip_verdict(report: WriteReport, policy: str = "warn") -> str | None:
    """Apply the ``--clip`` policy to an encoded output, before anything is written.

    Every policy clamps (that is what ``encode`` did); ``warn`` returns the warning to show
    (count, peak, the gain that avoids it), ``clamp`` returns None (silent), ``error`` raises
    ``OutputError`` so nothing is written. Nothing clipped: None under every policy.

    >>> r = WriteReport("o.wav", "wav", "PCM_16", clipped=12, peak=1.5)
    >>> clip_verdict(r, "warn")
    'o.wav: 12 samples clipped to the PCM_16 range (peak 1.500, +3.5 dBFS); --gain -3.6 would avoid it'
    >>> clip_verdict(r, "clamp") is None
    True
    """
    if policy not in CLIP_POLICIES:
        raise UsageError(f"--clip must be one of {', '.join(CLIP_POLICIES)}, got {policy!r}")
    if not report.clipped or policy == "clamp":
        return None
    peak = f"peak {report.peak:.3f}, {20 * math.log10(report.peak):+.1f} dBFS"
    gain = report.safe_gain_db
    if policy == "error":
        raise OutputError(
            f"{report.path}: {report.clipped:,} samples would clip to the {report.subtype} range "
            f"({peak}); nothing written (--clip error)",
            f"lower the level with --gain {gain:.1f}, write --subtype FLOAT, or allow it with "
            "--clip warn",
        )
    return (f"{report.path}: {report.clipped:,} samples clipped to the {report.subtype} range "
            f"({peak}); --gain {gain:.1f} would avoid it")

def nonfinite_pcm(subtype: str) -> tuple[str, str]:
    """The error (message, hint) for NaN/Inf bound for integer PCM, which has no code for them
    (a cast would write whatever the CPU makes of NaN, a full-scale click)."""
    return (f"the result holds NaN or Inf samples, which {subtype} cannot store; nothing written",
            ("they came from the input (--allow-nonfinite) or from an overflow: keep them with "
             "--subtype FLOAT or .npy, or compute with --dtype float64 and a smaller kernel or "
             "--gain"))


def to_pcm(frames: np.ndarray, subtype: str,
           out: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
    """Round float frames (full scale ±1) to integer PCM, clamping what would clip.

    Returns the container array for soundfile, the number of clamped samples and the peak.
    Rounded to nearest ourselves: libsndfile's own float->int conversion does not round.
    NaN/Inf have no integer code: an ``OutputError`` (``nonfinite_pcm``).
    ``out``: an integer array of the container type and of ``frames``' shape to write into (a
    channel's column of interleaved frames, so that converting also interleaves); it is what
    comes back.
    """
    scale, container, shift = PCM[subtype]
    peak = 0.0
    low, high = -scale, scale - 1
    maybe_clipped = True
    if frames.size:  # min and max: no |x| copy
        low_x, high_x = float(frames.min()), float(frames.max())
        if not math.isfinite(low_x + high_x):
            raise OutputError(*nonfinite_pcm(subtype))
        peak = max(-low_x, high_x)
        maybe_clipped = not (low <= low_x * scale and high_x * scale <= high)
    # PCM_32 in float64: float32 has no 2**31 - 1, so its clamp would round up to 2**31 and
    # wrap to -2**31 in the cast (a full-scale click on every clipped sample)
    scaled = np.multiply(frames, scale, dtype=np.float64 if scale > 2**24 else None)
    np.rint(scaled, out=scaled)
    clipped = 0
    if maybe_clipped:  # else the extremes show there is nothing to count or clamp
        clipped = int(np.count_nonzero(scaled < low)) + int(np.count_nonzero(scaled > high))
        np.clip(scaled, low, high, out=scaled)
    if out is None:
        ints = scaled.astype(container)
    else:
        ints = out
        np.copyto(ints, scaled, casting="unsafe")
    if shift:
        ints <<= shift
    return ints, clipped, peak
