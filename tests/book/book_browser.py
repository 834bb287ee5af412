"""Open pages of the built book in headless Chromium and report what a reader would see.

One browser for all pages, driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file descriptors 3
and 4 of the browser), so no driver package and no debugging port are needed. The pages
are served by a local HTTP server bound to the loopback interface only.

``inspect_pages(chromium, html_dir, paths)`` returns one :class:`PageReport` per page:
console errors, uncaught exceptions and failed loads; math elements and how many MathJax
typeset; images that did not load (``naturalWidth == 0``); figures whose caption holds
their alt text, or the rest of it (``caption_problems``).
"""

from __future__ import annotations

import functools
import json
import os
import select
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--remote-debugging-pipe"]

# Run in the page once it has loaded: wait for MathJax (2 or 3) to finish typesetting and
# for every image to load or fail, then describe what is on the page.
INSPECT = r"""
(async () => {
  // The hook must not return the queued callback: MathJax would wait for it while the
  // queue waits for the hook, and neither would ever finish.
  const mathjax2 = () => new Promise(resolve => {
    MathJax.Hub.Register.StartupHook("End", () => { MathJax.Hub.Queue(() => resolve()); });
  });
  if (window.MathJax && window.MathJax.Hub) {
    await mathjax2();
  } else if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    await window.MathJax.startup.promise;
  }
  const images = Array.from(document.images);
  for (const img of images) { img.loading = "eager"; }
  await Promise.all(images.map(img => img.complete ? null :
      new Promise(r => { img.addEventListener("load", r); img.addEventListener("error", r); })));
  const root = document.querySelector("article") || document.body;
  // MathJax 2's HTML-CSS output also uses the class "math" inside what it renders.
  const rendered = ".MathJax, .MathJax_Display, .MathJax_CHTML, .MathJax_SVG, mjx-container";
  const maths = Array.from(root.querySelectorAll(".math"))
      .filter(m => m.parentElement.closest(rendered) === null);
  const typeset = m => m.querySelector(
      ".MathJax, .MathJax_CHTML, .MathJax_SVG, mjx-container") !== null;
  return {
    math: maths.length,
    typeset: maths.filter(typeset).length,
    untypeset: maths.filter(m => !typeset(m)).slice(0, 3).map(m => m.textContent.slice(0, 80)),
    math_errors: root.querySelectorAll(".MathJax_Error, merror, mjx-merror").length
        + (document.body.textContent.includes("Math Processing Error") ? 1 : 0),
    images: images.length,
    broken_images: images.filter(i => !i.complete || i.naturalWidth === 0)
        .map(i => i.getAttribute("src").slice(0, 120)),
    figures: Array.from(root.querySelectorAll("figure"))
        .filter(f => f.querySelector("img") && f.querySelector("figcaption"))
        .map(f => {
          const caption = f.querySelector("figcaption .caption-text")
              || f.querySelector("figcaption");
          const first = caption.firstChild;
          return {alt: f.querySelector("img").getAttribute("alt") || "",
                  caption: caption.textContent,
                  code_first: first !== null && first.nodeType === 1
                      && first.querySelector("code, .pre") !== null
                      || first !== null && first.nodeName === "CODE"};
        }),
  };
})()
"""


@dataclass
class PageReport:
    path: str
    errors: list[str] = field(default_factory=list)
    math: int = 0
    typeset: int = 0
    untypeset: list[str] = field(default_factory=list)
    math_errors: int = 0
    images: int = 0
    broken_images: list[str] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)


def _words(text: str) -> str:
    return " ".join(text.split()).lower()


def caption_problems(alt: str, caption: str, *, code_first: bool = False) -> list[str]:
    """What is wrong with a figure whose image has ``alt`` and whose caption reads ``caption``.

    The alt text describes the image for a reader who cannot see it; the caption is shown
    to everyone. An alt option written over several source lines is cut at the first line
    break and the rest becomes the caption, so the alt text ends mid-sentence and the
    caption starts in lower case, with the alt's next words. ``code_first`` says that the
    caption opens with inline code, which may be lower case.
    """
    alt_words, caption_words = _words(alt), _words(caption)
    problems = []
    if alt_words and alt_words in caption_words:
        problems.append("the caption contains the image's alt text")
    elif alt_words and caption_words.startswith(" ".join(alt_words.split()[:6])):
        problems.append("the caption starts with the image's alt text")
    if alt.strip() and alt.strip()[-1] not in ".!?)\"'":
        problems.append(f"the alt text ends mid-sentence: ...{alt.strip()[-40:]!r}")
    stripped = caption.strip()
    if stripped and stripped[0].islower() and not code_first:
        problems.append(f"the caption starts mid-sentence: {stripped[:60]!r}...")
    return problems


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # the test reports problems itself
        pass


class _Browser:
    """A headless Chromium spoken to through the DevTools protocol on a pipe."""

    def __init__(self, chromium: str, profile: str):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes():  # in the child: the protocol's fixed descriptors 3 and 4
            read_end, write_end = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read_end, 3, inheritable=True)
            os.dup2(write_end, 4, inheritable=True)

        self.proc = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=wire_pipes,
            env={**os.environ, "HOME": profile})
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, *, session: str | None = None,
             timeout: float = 60.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str, timeout: float) -> dict:
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            event = self._receive(timeout)
            if event.get("method") == method and event.get("sessionId") == session:
                return event
            self.events.append(event)

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError(f"no answer from chromium within {timeout:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium exited (code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self):
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def _errors_from(events: list[dict], session: str) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among a page's events."""
    out = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in {"error", "assert"}:
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in
                            params.get("args", []))
            out.append(f"console.{params['type']}: {args[:300]}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            out.append(f"uncaught exception: {str(text)[:300]}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            if urlparse(entry.get("url", "")).path == "/favicon.ico":
                continue  # the browser asks the server for it; the pages name no icon
            out.append(f"{entry.get('source')}: {entry.get('text', '')[:200]} "
                       f"{entry.get('url', '')}".rstrip())
    return out


def inspect_pages(chromium: str, html_dir: Path, paths: list[str], *,
                  timeout: float = 60.0) -> list[PageReport]:
    """Load each page (a path relative to ``html_dir``) and report on it."""
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    reports = []
    with tempfile.TemporaryDirectory() as profile:
        browser = _Browser(chromium, profile)
        try:
            for path in paths:
                target = browser.send("Target.createTarget", {"url": "about:blank"})
                session = browser.send("Target.attachToTarget", {
                    "targetId": target["targetId"], "flatten": True})["sessionId"]
                for domain in ("Page", "Runtime", "Log"):
                    browser.send(f"{domain}.enable", session=session)
                browser.send("Page.navigate", {"url": base + path}, session=session)
                browser.wait_for("Page.loadEventFired", session, timeout)
                result = browser.send("Runtime.evaluate", {
                    "expression": INSPECT, "awaitPromise": True, "returnByValue": True},
                    session=session, timeout=timeout)
                report = PageReport(path)
                if "exceptionDetails" in result:
                    report.errors.append(f"inspection failed: {result['exceptionDetails']}")
                else:
                    for key, value in result["result"]["value"].items():
                        setattr(report, key, value)
                # Messages logged while the page settles arrive as events; collect them.
                browser.send("Runtime.evaluate", {"expression": "1"}, session=session)
                report.errors += _errors_from(browser.events, session)
                browser.events = [e for e in browser.events if e.get("sessionId") != session]
                browser.send("Target.closeTarget", {"targetId": target["targetId"]})
                reports.append(report)
        finally:
            browser.close()
            server.shutdown()
            server.server_close()
    return reports
