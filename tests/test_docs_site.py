"""The built documentation site, opened in headless chromium (``make docs`` builds and runs it).

The site (``docs/_build/html``) is served on localhost; a checker page on the same origin
loads each page in an iframe, waits for its images and writes what it found (title, text
length, each image's natural size, formulas typeset by MathJax) into its own DOM, which
``chromium --dump-dom`` prints. Each page is also screenshotted into
``docs/_build/screenshots/`` (CI artifacts).
"""

from __future__ import annotations

import functools
import html
import http.server
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

BUILD = Path(__file__).resolve().parents[1] / "docs" / "_build"
SITE = BUILD / "html"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHECKER = """<!doctype html><html><body><pre id="result">pending</pre>
<iframe id="page" width="1280" height="30000"></iframe>
<script>
const frame = document.getElementById("page");
frame.onload = async () => {
  const win = frame.contentWindow, doc = frame.contentDocument;
  const images = [...doc.images];
  await Promise.all(images.map(i => i.decode().catch(() => null)));
  if (doc.querySelector(".math")) {  // wait for MathJax (2 or 3) to typeset the page
    for (let k = 0; k < 300 && !(win.MathJax && (win.MathJax.isReady || win.MathJax.startup)); k++)
      await new Promise(r => setTimeout(r, 100));
    if (win.MathJax && win.MathJax.Hub) await new Promise(r => win.MathJax.Hub.Queue(r));
    if (win.MathJax && win.MathJax.startup) await win.MathJax.startup.promise;
  }
  await doc.fonts.ready;
  document.getElementById("result").textContent = JSON.stringify({
    title: doc.title,
    text: doc.body.innerText.length,
    headings: [...doc.querySelectorAll("h1")].map(h => h.textContent),
    signatures: [...doc.querySelectorAll("dt.sig")].map(d => d.id),
    math: doc.querySelectorAll(".math").length,
    typeset: doc.querySelectorAll(".MathJax, .MathJax_Display, mjx-container").length,
    images: images.map(i => ({src: i.getAttribute("src"), width: i.naturalWidth,
                              height: i.naturalHeight})),
  });
};
frame.src = new URLSearchParams(location.search).get("page");
</script></body></html>
"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium is not installed: run `make docs` (it installs Debian's chromium)")
    return exe


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site in {SITE}: run `make docs`")
    (BUILD / "checker.html").write_text(CHECKER, encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(BUILD))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _run_chromium(*args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [_chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HOME": profile},
            check=False,
        )
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def open_page(base: str, page: str) -> dict:
    """What the browser shows of ``page``: title, headings, text length, images' sizes."""
    url = f"{base}/checker.html?page=/html/{page}"
    for budget in (30000, 60000, 120000):
        # (a busy machine may leave a long page pending within the virtual time budget: a
        # failed load is only reported after three attempts with growing budgets)
        dom = _run_chromium(f"--virtual-time-budget={budget}", "--dump-dom", url)
        found = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S)
        if found and found.group(1) != "pending":
            return json.loads(html.unescape(found.group(1)))
    raise AssertionError(f"{page} did not load:\n{dom[:2000]}")


def screenshot(base: str, page: str) -> Path:
    out = BUILD / "screenshots" / (page.replace("/", "_").removesuffix(".html") + ".png")
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    url = f"{base}/html/{page}"
    _run_chromium(
        "--virtual-time-budget=30000", "--window-size=1280,1600", f"--screenshot={out}", url
    )
    return out


def _check_screenshot(path: Path) -> None:
    import matplotlib.image
    import numpy as np

    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (1600, 1280), pixels.shape
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]).round(2), axis=0)
    assert len(colours) > 20, f"{path.name} looks blank ({len(colours)} colours)"


@pytest.mark.parametrize(
    ("page", "heading", "min_images"),
    [
        ("index.html", "autodiffx", 1),
        ("api/generated/autodiffx.sin.html", "sin", 0),
        ("gallery/notebooks/08_implicit_differentiation.html", "Implicit differentiation", 3),
    ],
)
def test_page_renders_with_its_images(server, page, heading, min_images):
    seen = open_page(server, page)
    assert any(heading in h for h in seen["headings"]), seen["headings"]
    assert seen["text"] > 500, f"{page}: only {seen['text']} characters of text"
    assert len(seen["images"]) >= min_images, seen["images"]
    broken = [i["src"] for i in seen["images"] if i["width"] == 0 or i["height"] == 0]
    assert not broken, f"{page}: images that did not load: {broken}"
    assert seen["typeset"] >= seen["math"], f"{page}: formulas not typeset by MathJax: {seen}"
    _check_screenshot(screenshot(server, page))


def test_api_page_shows_the_signature(server):
    seen = open_page(server, "api/generated/autodiffx.sin.html")
    assert "autodiffx" in seen["title"]
    assert seen["signatures"] == ["autodiffx.sin"], seen["signatures"]
