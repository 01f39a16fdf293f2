"""functions/stft: any WAV in, a spectrogram out; the transform agrees with scipy; bad input is refused."""

from __future__ import annotations

import base64
import io
import sys

import pytest
from support import FUNCTIONS

from dcf_jupyter.errors import FunctionError

np = pytest.importorskip("numpy", reason="the stft function computes with NumPy: pip install -e '.[widgets]'")
pytest.importorskip("scipy", reason="its transform is checked against SciPy's: pip install scipy")
pytest.importorskip("matplotlib", reason="it draws with matplotlib: pip install -e '.[widgets]'")
from scipy import signal  # noqa: E402 - after the skips
from wavs import tone, wav_bytes  # noqa: E402

from dcf_jupyter.spectrogram import render_png  # noqa: E402

sys.path.insert(0, str(FUNCTIONS / "stft" / "src"))
import spectrogram  # noqa: E402 - the function's own module, from its folder


@pytest.mark.parametrize("kind", ["uint8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("stereo", [False, True])
def test_every_sample_format_reads_as_the_same_mono_signal(kind: str, stereo: bool) -> None:
    original = tone(0.25, 8000, stereo=stereo)
    rate, x = spectrogram.read_wav(wav_bytes(original, 8000, kind))
    assert rate == 8000 and x.ndim == 1
    expected = original.mean(axis=1) if stereo else original
    assert np.max(np.abs(x - expected)) < (0.01 if kind == "uint8" else 1e-4)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_the_tone_peaks_at_its_frequency_at_any_rate(rate: int) -> None:
    freqs, _times, db = spectrogram.spectrogram_db(tone(0.5, rate, freq=1000.0), rate)
    peak = freqs[np.argmax(db[:, db.shape[1] // 2])]
    assert abs(peak - 1000.0) <= rate / 1024


def test_magnitudes_match_scipy_stft_to_1e_6() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal(44100 * 3 + 123)  # a length that needs the last segment padded
    freqs, times, spectrum = spectrogram.stft(x, 44100)
    ref_freqs, ref_times, reference = signal.stft(x, 44100, window="hann", nperseg=1024, noverlap=512)
    assert spectrum.shape == reference.shape
    np.testing.assert_allclose(freqs, ref_freqs)
    np.testing.assert_allclose(times, ref_times)
    np.testing.assert_allclose(np.abs(spectrum), np.abs(reference), rtol=1e-6, atol=1e-12)


def test_a_signal_shorter_than_a_frame_still_works() -> None:
    _freqs, _times, db = spectrogram.spectrogram_db(np.ones(10), 8000)
    assert db.shape[0] == 513 and db.shape[1] >= 1


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty request"),
        (b"\xff\xd8\xff\xe0 this is a jpeg", "not a WAV file"),
        (b"RIFF\x00\x00\x00\x00WAVE", "unreadable or truncated WAV"),
        (wav_bytes(tone(0.5), 16000, "int16")[:2000], "unreadable or truncated WAV"),
        (wav_bytes(np.zeros(0), 16000, "int16"), "holds no samples"),
    ],
)
def test_bad_input_is_a_value_error(data: bytes, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        spectrogram.read_wav(data)


def test_png_is_a_picture_of_the_spectrogram() -> None:
    png = render_png(*spectrogram.spectrogram_db(tone(1.0, 16000), 16000), title="t")
    from PIL import Image

    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (1000, 450)


def test_frequency_ticks_are_readable_up_to_nyquist() -> None:
    from dcf_jupyter.spectrogram import frequency_ticks, hz_label

    assert [hz_label(f) for f in frequency_ticks(50, 8000)] == [
        "50 Hz", "100 Hz", "200 Hz", "500 Hz", "1 kHz", "2 kHz", "5 kHz", "8 kHz"]
    assert [hz_label(f) for f in frequency_ticks(86.1, 22050)][-3:] == ["5 kHz", "10 kHz", "20 kHz"]
    assert hz_label(22050) == "22.05 kHz"


def test_the_picture_leaves_out_the_frames_that_reach_past_the_audio() -> None:
    from dcf_jupyter.spectrogram import whole_frames

    rate = 16000
    freqs, times, db = spectrogram.spectrogram_db(tone(1.0, rate), rate)
    kept = whole_frames(times, 1.0, spectrogram.FRAME / rate)
    assert kept[0] == 1 and kept[-1] == len(times) - 3, (kept, len(times))  # the first, and the last two, padded
    # Those edge frames are where a tone starting at full volume clicks across every frequency:
    high = freqs > 4000
    assert db[high, 0].max() > db[high][:, kept].max() + 40
    assert list(whole_frames(times[:2], 0.01, 0.064)) == [0, 1]  # too short to leave any out: all drawn


def test_the_function_and_plot_spectrogram_draw_the_same_picture() -> None:
    from PIL import Image

    from dcf_jupyter.widgets._spectrogram import Spectrum

    rate = 16000
    wav = wav_bytes(tone(1.0, rate), rate, "int16")
    import importlib.util

    # By path: other tests put other functions' handler.py modules on sys.path under the same name.
    found = importlib.util.spec_from_file_location("stft_handler", FUNCTIONS / "stft" / "src" / "handler.py")
    assert found is not None and found.loader is not None
    handler = importlib.util.module_from_spec(found)
    found.loader.exec_module(handler)

    class Request:
        input = wav

    from_function = Image.open(io.BytesIO(base64.b64decode(handler.Handler()(Request()))))
    numbers = Spectrum.from_npz(handler.Spectrum()(Request()), title=f"1.00 s at {rate} Hz")
    from_notebook = Image.open(io.BytesIO(numbers.png()))
    assert from_function.size == from_notebook.size
    pixels = [np.asarray(picture.convert("RGB"), float) for picture in (from_function, from_notebook)]
    difference = np.abs(pixels[0] - pixels[1])
    # The .npz carries float32: a few pixels land one shade of the colour map apart, none more.
    assert difference.max() <= 2 and (difference > 0).mean() < 0.002, (difference.max(), (difference > 0).mean())


@pytest.fixture(scope="module")
def stft_deployed(gateway):
    gateway.client.deploy(FUNCTIONS / "stft", "stft")
    gateway.client.deploy(FUNCTIONS / "stft", "stft-data")
    yield gateway.client
    gateway.client.delete("stft")
    gateway.client.delete("stft-data")


def test_stft_through_the_gateway_returns_base64_png(stft_deployed) -> None:
    reply = stft_deployed.call("stft", wav_bytes(tone(1.0, 22050, stereo=True), 22050, "int16"))
    assert isinstance(reply, str)
    assert base64.b64decode(reply).startswith(b"\x89PNG\r\n\x1a\n")


def test_stft_data_returns_the_numbers(stft_deployed) -> None:
    reply = stft_deployed.call("stft-data", wav_bytes(tone(1.0, 16000, freq=2000.0), 16000, "float32"))
    arrays = np.load(io.BytesIO(reply))
    freqs, times, db = arrays["freqs"], arrays["times"], arrays["db"]
    assert db.shape == (len(freqs), len(times))
    assert abs(freqs[np.argmax(db[:, len(times) // 2])] - 2000.0) <= 16
    assert times[-1] >= 0.95


@pytest.mark.parametrize("data", [b"", b"not a wav at all", wav_bytes(tone(), 16000, "int16")[:300]])
def test_bad_input_through_the_gateway_is_invalid_argument(stft_deployed, data: bytes) -> None:
    with pytest.raises(FunctionError) as info:
        stft_deployed.call("stft", data)
    assert info.value.code == "INVALID_ARGUMENT"
    assert stft_deployed.call("stft-data", wav_bytes(tone(0.1), 16000, "int16"))  # and the worker goes on
