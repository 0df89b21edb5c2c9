"""Make the files in sample_data/ (run from the repo root: python sample_data/make_samples.py).

- chord.wav    2 s stereo 44.1 kHz PCM_16: an A-major chord with a little noise, the channels
               slightly detuned, so filtering has something to smooth.
- speech.wav   a spoken phrase made with espeak-ng (mono, 22.05 kHz PCM_16).
- batch.npy    float32 (4, 2, 8000): four stereo 0.5 s clips at 16 kHz (chirps plus noise).
- tc.npy       float64 (4000, 2): a (time, channels) signal, to show --layout tc.
- smooth5.txt  a 5-tap kernel as text, one number per line.
- conv1d_2x16x3.npy  float32 (16, 2, 3): the weights of Conv1d(2, 16, 3) (seeded), a filter bank.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
rng = np.random.default_rng(20261125)

# chord.wav
rate = 44_100
t = np.arange(2 * rate) / rate
notes = [220.0, 277.18, 329.63, 440.0]
left = sum(np.sin(2 * np.pi * f * t) for f in notes)
right = sum(np.sin(2 * np.pi * f * 1.003 * t + 0.3) for f in notes)
chord = np.stack([left, right], axis=1) / len(notes) * 0.6
chord += 0.05 * rng.standard_normal(chord.shape)
fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.05)[:, None]
sf.write(HERE / "chord.wav", chord * fade, rate, subtype="PCM_16")

# speech.wav
try:
    subprocess.run(
        ["espeak-ng", "-w", str(HERE / "speech.wav"), "-s", "150",
         "Convolution is cross correlation with the kernel flipped."],
        check=True,
    )
except (OSError, subprocess.CalledProcessError) as exc:  # keep the committed file
    print(f"espeak-ng unavailable ({exc}); speech.wav left as it is")

# batch.npy
rate_b = 16_000
tb = np.arange(rate_b // 2) / rate_b
clips = []
for f0 in (200.0, 400.0, 800.0, 1600.0):
    chirp = np.sin(2 * np.pi * (f0 * tb + 2000 * tb**2))
    clips.append(np.stack([chirp, np.roll(chirp, 40)]) + 0.1 * rng.standard_normal((2, tb.size)))
np.save(HERE / "batch.npy", np.asarray(clips, dtype=np.float32))

# tc.npy
tt = np.arange(4000) / 8000
np.save(HERE / "tc.npy", np.stack([np.sin(2 * np.pi * 440 * tt), np.cos(2 * np.pi * 660 * tt)], axis=1))

# smooth5.txt
(HERE / "smooth5.txt").write_text("# a 5-tap binomial smoother\n0.0625\n0.25\n0.375\n0.25\n0.0625\n")

# conv1d_2x16x3.npy
np.save(HERE / "conv1d_2x16x3.npy", (rng.standard_normal((16, 2, 3)) / np.sqrt(6)).astype(np.float32))
