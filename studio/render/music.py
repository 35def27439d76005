"""A music bed, synthesised: for drafts that ask for music but name no file.

Nothing is downloaded: a four-chord progression (I-V-vi-IV) played as a soft pad
with a bass note, a plucked arpeggio and, by mood, a gentle beat. Deterministic for a
given mood and length, so tests and benchmarks hear the same thing every time.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from studio.render.timeline import Mood

SAMPLE_RATE = 48_000
Signal = npt.NDArray[np.float64]

# semitones above the key's root for I, V, vi, IV (root position triads)
_PROGRESSION = ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12))


@dataclass(frozen=True)
class _Style:
    bpm: float
    root_hz: float
    pluck: float  # level of the arpeggio
    beat: float  # level of the kick
    hats: float  # level of the noise hi-hat
    arpeggio_steps: int  # notes per beat


_STYLES = {
    Mood.UPBEAT: _Style(
        bpm=112, root_hz=261.63, pluck=0.22, beat=0.35, hats=0.05, arpeggio_steps=2
    ),
    Mood.CALM: _Style(bpm=72, root_hz=220.00, pluck=0.16, beat=0.0, hats=0.0, arpeggio_steps=1),
    Mood.LOFI: _Style(bpm=84, root_hz=196.00, pluck=0.18, beat=0.28, hats=0.03, arpeggio_steps=2),
}


def synthesize(duration_s: float, mood: Mood = Mood.UPBEAT) -> npt.NDArray[np.int16]:
    """Stereo 16-bit samples at :data:`SAMPLE_RATE`, ``duration_s`` long.

    One pass of the progression is made and repeated: every voice is silent or
    restarts at a bar line, so the loop is seamless and the cost does not grow with
    the length.
    """
    style = _STYLES[mood]
    count = max(1, round(duration_s * SAMPLE_RATE))
    beat_s = 60.0 / style.bpm
    bar_s = 4 * beat_s
    loop = _progression(style, round(len(_PROGRESSION) * bar_s * SAMPLE_RATE))
    repeats = -(-count // len(loop))
    return np.tile(loop, (repeats, 1))[:count]


def _progression(style: _Style, count: int) -> npt.NDArray[np.int16]:
    """One pass of the chord progression, ``count`` samples long."""
    t = np.arange(count, dtype=np.float64) / SAMPLE_RATE
    beat_s = 60.0 / style.bpm
    bar_s = 4 * beat_s
    chord_index = (t // bar_s).astype(np.int64) % len(_PROGRESSION)
    left = np.zeros(count)
    right = np.zeros(count)

    # pad: each chord tone with a soft second harmonic, swelling over each bar
    in_bar = (t % bar_s) / bar_s
    swell = np.minimum(1.0, in_bar * 8) * np.minimum(1.0, (1.0 - in_bar) * 8)
    for voice in range(3):
        semis = np.array([chord[voice] for chord in _PROGRESSION])[chord_index]
        freq = style.root_hz * 2.0 ** (semis / 12.0)
        phase = 2 * np.pi * np.cumsum(freq) / SAMPLE_RATE
        tone = (np.sin(phase) + 0.3 * np.sin(2 * phase)) * swell * 0.09
        pan = 0.35 + 0.15 * voice
        left += tone * (1 - pan)
        right += tone * pan
    bass_freq = (
        style.root_hz / 2 * 2.0 ** (np.array([c[0] for c in _PROGRESSION])[chord_index] / 12.0)
    )
    bass = np.sin(2 * np.pi * np.cumsum(bass_freq) / SAMPLE_RATE) * swell * 0.16
    left += bass
    right += bass

    # arpeggio: plucked notes, decaying
    step_s = beat_s / style.arpeggio_steps
    step = (t // step_s).astype(np.int64)
    since = t - step * step_s
    pattern = np.array([0, 1, 2, 1])
    semis = np.array(_PROGRESSION)[chord_index, pattern[step % len(pattern)]] + 12
    pluck_freq = style.root_hz * 2.0 ** (semis / 12.0)
    pluck = np.sin(2 * np.pi * pluck_freq * since) * np.exp(-since * 7.0) * style.pluck
    left += pluck * 0.6
    right += pluck * 0.4

    # beat: a pitched-down thump on each beat, and soft noise hats between
    if style.beat:
        since_beat = t % beat_s
        kick = np.sin(2 * np.pi * (50 + 80 * np.exp(-since_beat * 30)) * since_beat)
        kick *= np.exp(-since_beat * 12.0) * style.beat
        left += kick
        right += kick
    if style.hats:
        rng = np.random.default_rng(7)  # the same hats every time
        since_half = (t + beat_s / 2) % beat_s
        hats = rng.standard_normal(count) * np.exp(-since_half * 60.0) * style.hats
        left += hats
        right += hats

    stereo = np.stack([left, right], axis=1)
    peak = float(np.max(np.abs(stereo))) or 1.0
    stereo *= 0.7 / peak
    return (stereo * 32767).astype(np.int16)


def write_wav(path: Path, samples: npt.NDArray[np.int16]) -> None:
    """Write stereo 16-bit samples as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(np.ascontiguousarray(samples).tobytes())
