"""The report in a real browser (headless Chromium): the charts are in the rendered DOM and the page is drawn.

Skipped when Chromium is not installed (`.ci/run` installs it when it can).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from itertools import accumulate
from pathlib import Path

import pytest

from hfbatch.report import render_report
from tests.report_helpers import Page, make_errors, make_run_data

CHROMIUM = shutil.which("chromium") or next((p for p in ("/usr/bin/chromium",) if Path(p).exists()), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium); the browser check needs it"
)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
BROWSER_TIMEOUT = 60  # seconds; a healthy run takes 2-4


def _chromium(tmp_path: Path, *args: str) -> bytes:
    """Run headless Chromium with its own profile folder; return what it wrote to stdout."""
    assert CHROMIUM is not None
    profile = tmp_path / "profile"
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=BROWSER_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _unfilter(kind: int, line: bytes, prev: bytes, bpp: int) -> bytes:
    """One PNG scanline with its filter undone (RFC 2083, 6.3)."""
    if kind == 0:
        return line
    if kind == 1:  # Sub: a running sum per channel
        out = bytearray(len(line))
        for c in range(bpp):
            out[c::bpp] = bytes(v & 255 for v in accumulate(line[c::bpp]))
        return bytes(out)
    if kind == 2:  # Up: bytewise addition without carries, on whole lines as integers
        n = len(line)
        a, b = int.from_bytes(line, "big"), int.from_bytes(prev, "big")
        low, high = int.from_bytes(b"\x7f" * n, "big"), int.from_bytes(b"\x80" * n, "big")
        return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(n, "big")
    out = bytearray(line)
    for i in range(len(out)):
        left = out[i - bpp] if i >= bpp else 0
        if kind == 3:
            out[i] = (out[i] + ((left + prev[i]) >> 1)) & 255
        else:
            out[i] = (out[i] + _paeth(left, prev[i], prev[i - bpp] if i >= bpp else 0)) & 255
    return bytes(out)


def decode_png(data: bytes) -> tuple[int, int, int, list[bytes]]:
    """Width, height, bytes per pixel and the pixel rows of an 8-bit RGB(A) PNG, with the stdlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, []
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and color in (2, 6) and interlace == 0
            bpp = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat.append(body)
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp + 1
    rows, prev = [], bytes(width * bpp)
    for y in range(height):
        prev = _unfilter(raw[y * stride], raw[y * stride + 1 : (y + 1) * stride], prev, bpp)
        rows.append(prev)
    return width, height, bpp, rows


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of two providers over a resumed run, with errors, written to disk."""
    stats, timeline = make_run_data()
    path = tmp_path_factory.mktemp("browser") / "results.jsonl.report.html"
    path.write_text(render_report(stats, timeline, make_errors(200), title="results.jsonl"), encoding="utf-8")
    return path


def test_rendered_dom_has_every_chart_and_series(report_file: Path, tmp_path: Path) -> None:
    """After Chromium parses and lays out the page, every chart SVG and its series are in the DOM."""
    dom = _chromium(tmp_path, "--dump-dom", report_file.as_uri()).decode()
    page = Page(dom)
    assert set(page.svgs) >= {"chart-throughput", "chart-latency", "chart-failures", "chart-limits", "chart-cost"}
    for chart in ("chart-throughput", "chart-latency", "chart-limits", "chart-cost"):
        assert {"alpha", "beta"} <= set(page.series[chart]), chart
    assert {"429", "5xx"} <= set(page.series["chart-failures"])
    assert page.stats["status"]["data-state"] == "finished"


def test_screenshot_is_drawn_in_the_palette(report_file: Path, tmp_path: Path) -> None:
    """A 1200x2400 screenshot is not blank: many colours, ink over a real share of it, both providers' colours."""
    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", report_file.as_uri())
    width, height, bpp, rows = decode_png(shot.read_bytes())
    assert (width, height) == (1200, 2400)
    colours: set[bytes] = set()
    ink = 0
    for row in rows[::2]:
        pixels = [row[i : i + 3] for i in range(0, len(row), bpp * 2)]
        colours.update(pixels)
        ink += sum(p != b"\xff\xff\xff" for p in pixels)
    assert len(colours) > 50
    assert ink / (len(rows[::2]) * width / 2) > 0.05
    # The legend swatches are drawn in the providers' exact palette colours (Okabe-Ito blue and orange).
    assert bytes.fromhex("0072b2") in colours and bytes.fromhex("e69f00") in colours
