"""STFT spectrograms of .wav audio.

Handler (function `stft`): the request is the bytes of a .wav file; the reply is the spectrogram
as base64 PNG text, as in the DCF example, drawn by dcf_jupyter.spectrogram (the same picture as the
notebook's plot_spectrogram). Spectrum (function `stft-data`): the same request; the reply is .npz
bytes with freqs, times and db (and duration and window, in seconds), for plotting interactively.
"""

import base64

from spectrogram import FRAME, read_wav, spectrogram_db, to_npz

from dcf_jupyter.spectrogram import render_png


class Handler:
    def __call__(self, req):
        rate, samples = read_wav(req.input)
        duration = len(samples) / rate
        png = render_png(*spectrogram_db(samples, rate), title=f"{duration:.2f} s at {rate} Hz", duration=duration,
                         window_s=FRAME / rate)
        return base64.b64encode(png).decode("ascii")


class Spectrum:
    def __call__(self, req):
        rate, samples = read_wav(req.input)
        return to_npz(*spectrogram_db(samples, rate), duration=len(samples) / rate, window=FRAME / rate)
