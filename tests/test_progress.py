"""udass.progress: a bar in a terminal, log lines elsewhere (papermill, pipes, batch jobs), chosen
by the stream or UDASS_PROGRESS; the lines' timing and text on a controlled clock."""
from __future__ import annotations

import io

import pytest

import udass.progress as progress
from udass.errors import UdassError
from udass.progress import Progress, duration, progress_mode, rate_text


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("env,tty,mode", [
    (None, True, "bar"), (None, False, "lines"), ("auto", True, "bar"), ("", False, "lines"),
    ("lines", True, "lines"), ("BAR", False, "bar"), ("off", True, "off"),
])
def test_mode_follows_the_terminal_unless_udass_progress_says(monkeypatch, env, tty, mode):
    if env is None:
        monkeypatch.delenv("UDASS_PROGRESS", raising=False)
    else:
        monkeypatch.setenv("UDASS_PROGRESS", env)
    assert progress_mode(_Stream(tty)) == mode


def test_an_unknown_udass_progress_value_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv("UDASS_PROGRESS", "fancy")
    with pytest.raises(UdassError, match=r"UDASS_PROGRESS='fancy': expected auto, bar, lines or off"):
        progress_mode(_Stream(True))


def test_durations_and_rates_read_as_a_person_writes_them():
    assert [duration(s) for s in (0, 59.9, 60, 185, 3599, 3600, 7620)] == [
        "0 s", "59 s", "1 min 00 s", "3 min 05 s", "59 min 59 s", "1 h 00 min", "2 h 07 min"]
    assert rate_text(10, 4, "step") == "2.50 step/s"
    assert rate_text(3, 12.6, "frame") == "4.2 s/frame"
    assert rate_text(0, 5, "clip") == "- clip/s"


def test_lines_come_first_then_every_tenth_or_every_30_s_then_a_closing_line(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = Progress(100, "quadmix vit", unit="step", mode="lines", stream=out)
    clock.now += 2.0
    bar.update(1, loss=1.5, mix=0.25)   # the first update: a line at once
    for _ in range(9):                  # steps 2..10: 9 since the last line, no line
        clock.now += 0.5
        bar.update(1, loss=1.25)
    clock.now += 0.5
    bar.update(1, loss=1.0)             # step 11: 10 steps since the last line
    clock.now += 31.0
    bar.update(1, loss=0.5)             # step 12: 31 s since the last line
    clock.now += 1.0
    bar.close()
    assert out.getvalue().splitlines() == [
        "quadmix vit: step 1/100 (1%), loss 1.5, mix 0.25, 2.0 s/step, 2 s elapsed, ETA 3 min 18 s",
        # speed and time left from the first update on: the start-up (2 s here) is left out
        "quadmix vit: step 11/100 (11%), loss 1, 2.00 step/s, 7 s elapsed, ETA 44 s",
        "quadmix vit: step 12/100 (12%), loss 0.5, 3.3 s/step, 38 s elapsed, ETA 4 min 48 s",
        "quadmix vit: step 12/100 (12%), loss 0.5, 3.2 s/step, 39 s elapsed, done",
    ]


def test_a_resumed_count_measures_speed_from_where_it_started(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    with Progress(1000, "dacs cnn", unit="step", initial=600, mode="lines", stream=out) as bar:
        clock.now += 10.0
        bar.update(20)
    first = out.getvalue().splitlines()[0]
    assert first == "dacs cnn: step 620/1000 (62%), 2.00 step/s, 10 s elapsed, ETA 3 min 10 s"


def test_an_interrupted_count_closes_without_done_and_the_last_update_waits_for_close(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with Progress(4, "segment a.mp4", unit="frame", mode="lines", stream=out) as bar:
            for _ in range(2):
                clock.now += 1.0
                bar.update(1)
            raise KeyboardInterrupt
    lines = out.getvalue().splitlines()
    assert lines[-1] == "segment a.mp4: frame 2/4 (50%), 1.00 frame/s, 2 s elapsed, ETA 2 s"
    out = io.StringIO()
    with Progress(8, "x", unit="clip", mode="lines", stream=out) as bar:
        for _ in range(8):   # a quick job (within 2 s): only its closing line
            clock.now += 0.125
            bar.update(1)
    assert out.getvalue() == "x: clip 8/8 (100%), 8.00 clip/s, 1 s elapsed, done\n"


def test_disabled_and_off_write_nothing_and_a_bar_draws_on_its_stream():
    out = io.StringIO()
    for kw in ({"enabled": False}, {"mode": "off"}):
        with Progress(5, "x", stream=out, **kw) as bar:
            bar.update(5)
            bar.write("message")
    assert out.getvalue() == ""
    with Progress(5, "x", stream=out, mode="off") as bar:
        bar.write("frames of 2 sizes", always=True)   # a warning, not progress
    assert out.getvalue() == "frames of 2 sizes\n"
    out = io.StringIO()
    with Progress(5, "evaluate teacher", unit="clip", mode="bar", stream=out) as bar:
        bar.update(5, loss=0.5)
    assert "evaluate teacher" in out.getvalue() and "5/5" in out.getvalue() and "\r" in out.getvalue()
