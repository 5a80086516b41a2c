"""Silent input: tag() still answers, with a SilentAudioWarning naming the input; the CLI says so.

The peak that decides it is measured on the mono signal at the model's rate, for arrays, files
decoded whole and files streamed block by block alike (Runner.run_inputs(peaks=...))."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import soundfile as sf

import mirzoo
import mirzoo.audio
import mirzoo.inference.runner as runner
from conftest import SR, tone_mix
from mirzoo.cli import main


def _silent_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, mirzoo.SilentAudioWarning)]


def test_peak_helpers():
    assert mirzoo.audio.peak_amplitude(np.array([0.1, -0.5, 0.25], np.float32)) == 0.5
    assert mirzoo.audio.peak_amplitude(np.zeros(0, np.float32)) == 0.0
    assert mirzoo.audio.dbfs(0.0) == "-inf dBFS"
    assert mirzoo.audio.dbfs(0.1) == "-20.0 dBFS"
    assert mirzoo.audio.is_silent(0.0) and mirzoo.audio.is_silent(0.99 * mirzoo.audio.SILENCE_PEAK)
    assert not mirzoo.audio.is_silent(mirzoo.audio.SILENCE_PEAK)
    # dithered 16-bit silence (+-1 step) is silent; a 14-bit step is not far below the floor
    assert mirzoo.audio.is_silent(1 / 32768) and not mirzoo.audio.is_silent(4 / 32768)


def test_tag_warns_on_silent_input_and_keeps_its_answer():
    m = mirzoo.load("cnn-tagging")
    music = tone_mix(6.0, seed=1)
    quiet = np.full(6 * SR, 0.5 * mirzoo.audio.SILENCE_PEAK, np.float32)
    quiet[::2] *= -1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = m.tag([music, quiet, np.zeros(6 * SR, np.float32)], sr=SR, top_k=None)
        single = m.tag(np.zeros(6 * SR, np.float32), sr=SR, top_k=None)
    messages = _silent_warnings(caught)
    assert len(messages) == 3, messages
    assert messages[0].startswith("audio[1] is silent (peak -86.0 dBFS, below -80.0 dBFS)")
    assert messages[1].startswith("audio[2] is silent (peak -inf dBFS")
    assert messages[2].startswith("audio is silent") and "'tags' probabilities describe the model" in messages[2]
    # the probabilities are still the head's mean over patches, as predict() gives them
    want = m.predict([music, np.zeros(6 * SR, np.float32)], sr=SR)
    labels = m.heads[m.check_head(None)]
    for pairs, w in zip([got[0], got[2]], want):
        np.testing.assert_allclose([dict(pairs)[t] for t in labels], w, rtol=1e-5, atol=1e-7)
    assert dict(single) == dict(got[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", mirzoo.SilentAudioWarning)
        m.tag(music, sr=SR)  # music: no warning


def test_tag_warns_for_silent_files_streamed_and_decoded(tmp_path, monkeypatch):
    m = mirzoo.load("tcn-music")  # the clip-tags record path of tag()
    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(int(7.3 * 22050), np.float32), 22050)
    loud_once = np.zeros(int(7.3 * SR), np.float32)
    loud_once[SR] = 0.25  # one sample at -12 dBFS: not silent
    click = tmp_path / "click.wav"
    sf.write(click, loud_once, SR, subtype="FLOAT")
    for stream in (False, True):
        if stream:
            monkeypatch.setattr(runner, "STREAM_MIN_SAMPLES", 1)
            monkeypatch.setattr(mirzoo.audio, "_BLOCK_FRAMES", 4099)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m.tag([str(click), str(silent)], top_k=3)
            m.tag(str(silent), head="key", top_k=3)  # the clip-key path
        messages = _silent_warnings(caught)
        assert len(messages) == 2, (stream, messages)
        assert all(msg.startswith(f"{silent} is silent (peak -inf dBFS") for msg in messages)
        assert "'key' probabilities" in messages[1]


def test_run_inputs_reports_each_peak_at_the_model_rate(tmp_path, monkeypatch):
    m = mirzoo.load("dense-frame")
    y = tone_mix(5.0, seed=3) * 0.3
    path = tmp_path / "a.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    want = [mirzoo.audio.peak_amplitude(mirzoo.audio.load_audio(str(path), m.sample_rate)),
            mirzoo.audio.peak_amplitude(mirzoo.audio.prepare_audio(y, SR, m.sample_rate))]
    peaks: list = []
    m.run_inputs([str(path), y], SR, [m.default_layer], 4, peaks=peaks)
    np.testing.assert_allclose(peaks, want, rtol=1e-6)
    monkeypatch.setattr(runner, "STREAM_MIN_SAMPLES", 1)
    monkeypatch.setattr(mirzoo.audio, "_BLOCK_FRAMES", 997)
    streamed: list = []
    m.run_inputs([str(path), y], SR, [m.default_layer], 4, peaks=streamed)
    np.testing.assert_allclose(streamed, want, rtol=1e-5)


def test_cli_tag_says_which_file_is_silent(tmp_path, capsys):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(5 * SR, np.float32), SR)
    assert main(["tag", "cnn-tagging", str(silent), mirzoo.example_audio(), "--top-k", "2", "--json"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [r["silent"] for r in rows] == [True, False]
    assert len(rows[0]["tags"]) == 2
    assert f"warning: {silent} is silent (peak -inf dBFS" in captured.err
    assert "SilentAudioWarning" not in captured.err  # said once, as a warning line, not as Python's repr
    assert main(["tag", "cnn-tagging", str(silent), "--top-k", "1"]) == 0
    assert captured.err.count("is silent") == 1
    assert capsys.readouterr().out.startswith(f"{silent}  (silent)\n")


def test_silent_audio_warning_is_exported():
    assert issubclass(mirzoo.SilentAudioWarning, UserWarning)
    assert "SilentAudioWarning" in mirzoo.__all__
    with pytest.raises(mirzoo.AudioError):  # silence is valid input, an empty array is not
        mirzoo.load("cnn-tagging").tag(np.zeros(0, np.float32), sr=SR)


def test_analyze_warns_on_silent_input_and_names_it(tmp_path, capsys):
    m = mirzoo.load("tcn-music")
    music = tone_mix(4.0, seed=2)
    silence = np.zeros(4 * SR, np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alone = m.analyze(silence, sr=SR)
        both = m.analyze([music, silence], sr=SR)
        m.analyze(music, sr=SR)
    messages = _silent_warnings(caught)
    assert len(messages) == 2
    assert messages[0].startswith("audio is silent (peak -inf dBFS, below -80.0 dBFS): its key")
    assert messages[1].startswith("audio[1] is silent")
    assert all(w.filename == __file__ for w in caught if issubclass(w.category, mirzoo.SilentAudioWarning))
    assert alone.to_dict() == both[1].to_dict()  # still analysed, the same alone or in a batch
    path = tmp_path / "quiet.wav"
    sf.write(path, silence, SR)
    ok = tmp_path / "music.wav"
    sf.write(ok, music, SR)
    out = tmp_path / "a.json"
    assert main(["analyze", str(path), str(ok), "-o", str(out), "-q"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path} is silent (peak -inf dBFS" in err and str(ok) not in err
    assert [f["silent"] for f in json.loads(out.read_text())["files"]] == [True, False]
