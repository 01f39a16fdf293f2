"""The stft function's compute vs scipy.signal.stft on the same 10 s, 44.1 kHz WAV.

    python benchmarks/stft.py [--repeat 20]

Prints the transform alone (ours vs scipy.signal.stft on the same samples) and the handler's whole
compute (WAV bytes -> dB matrix) against the same steps built on scipy.signal.stft; target <= 1.5x.
Drawing the PNG is reported separately (it is not compute).
"""

from __future__ import annotations

import argparse
import io
import sys

import numpy as np
from _harness import ROOT, median_seconds
from scipy import signal
from scipy.io import wavfile

sys.path.insert(0, str(ROOT / "functions" / "stft" / "src"))
import spectrogram

from dcf_jupyter.spectrogram import render_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rate = 44100
    t = np.arange(10 * rate) / rate
    x = 0.4 * np.sin(2 * np.pi * 440 * t * (1 + t / 10)) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    buffer = io.BytesIO()
    wavfile.write(buffer, rate, (x * 32767).astype(np.int16))
    wav = buffer.getvalue()

    def scipy_compute() -> np.ndarray:
        r, samples = wavfile.read(io.BytesIO(wav))
        _, _, z = signal.stft(samples / 32768.0, r, window="hann", nperseg=1024, noverlap=512)
        return 20 * np.log10(np.maximum(np.abs(z), 1e-8))

    ours_t = median_seconds(lambda: spectrogram.stft(x, rate), args.repeat)
    scipy_t = median_seconds(lambda: signal.stft(x, rate, window="hann", nperseg=1024, noverlap=512), args.repeat)
    def our_compute() -> np.ndarray:
        r, samples = spectrogram.read_wav(wav)
        return spectrogram.spectrogram_db(samples, r)[2]

    ours_c = median_seconds(our_compute, args.repeat)
    scipy_c = median_seconds(scipy_compute, args.repeat)
    render = median_seconds(lambda: render_png(*spectrogram.spectrogram_db(x, rate)),
                            max(3, args.repeat // 4))
    print(f"10 s at 44.1 kHz ({len(wav) // 1024} KiB WAV), median of {args.repeat}:")
    print(f"  transform: ours {ours_t * 1e3:7.1f} ms   scipy.signal.stft {scipy_t * 1e3:7.1f} ms   "
          f"ratio {ours_t / scipy_t:.2f}x")
    print(f"  handler compute (WAV bytes -> dB): ours {ours_c * 1e3:7.1f} ms   on scipy.signal.stft "
          f"{scipy_c * 1e3:7.1f} ms   ratio {ours_c / scipy_c:.2f}x  (target <= 1.5x)")
    print(f"  drawing the PNG (not compute): {render * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
