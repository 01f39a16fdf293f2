"""STFT spectrograms of .wav audio.

Handler (function `stft`): the request is the bytes of a .wav file; the reply is the spectrogram
as base64 PNG text, as in the DCF example. Spectrum (function `stft-data`): the same request;
the reply is .npz bytes with freqs, times and db, for plotting interactively.
"""

import base64

from spectrogram import read_wav, render_png, spectrogram_db, to_npz


class Handler:
    def __call__(self, req):
        rate, samples = read_wav(req.input)
        freqs, times, db = spectrogram_db(samples, rate)
        title = f"{len(samples) / rate:.2f} s at {rate} Hz"
        return base64.b64encode(render_png(freqs, times, db, title)).decode("ascii")


class Spectrum:
    def __call__(self, req):
        rate, samples = read_wav(req.input)
        return to_npz(*spectrogram_db(samples, rate))
