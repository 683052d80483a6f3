"""Open the built book's lesson pages in headless Chromium and check what a reader sees.

For every lesson in _toc.yml: the page exists, Chromium renders it (``--dump-dom``), it shows at
least one figure produced by an executed cell (an ``img`` inside a ``cell_output``), and no cell
output is an error, a traceback or stderr. One lesson page is also saved as a screenshot.

Formulas: the book loads MathJax from its CDN (Sphinx's default ``mathjax_path``), so a page
viewed offline shows them as TeX source. This check accepts that explicitly: a page whose
formulas were not typeset passes with an "accepted" line naming the CDN script it could not
load; ``--require-math`` (the published book's CI, which is online) makes it a failure.

    python scripts/check_book_browser.py                 # builds _build/html first if missing
    python scripts/check_book_browser.py --build         # (re)build with scripts/build_book.sh
    python scripts/check_book_browser.py --screenshot-lesson lessons/00_start_here
    python scripts/check_book_browser.py --require-math  # online: MathJax must typeset formulas

Needs Chromium (Debian: ``apt-get install -y chromium``). Exit status 0 only if every check passes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
VOID_ELEMENTS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr",
}  # fmt: skip
# Output classes myst-nb gives to what a reader must never see in a lesson.
BAD_OUTPUT_CLASSES = {"traceback", "error", "stderr"}


def toc_lessons(toc_path: Path) -> list[str]:
    """Lesson entries of _toc.yml (``lessons/NN_name``), in book order."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    entries: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("file"), str):
                entries.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return [entry for entry in entries if entry.startswith("lessons/")]


@dataclass
class PageReport:
    """What the DOM of one page contains."""

    output_images: int = 0
    bad_outputs: list[str] = field(default_factory=list)
    title: str = ""
    formulas: int = 0  # Sphinx's math spans/divs (TeX source until MathJax typesets them)
    typeset: int = 0  # MathJax 3's <mjx-container> elements
    mathjax_src: str = ""


class OutputScanner(HTMLParser):
    """Counts images in cell outputs and collects error/stderr outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, set[str]]] = []
        self.report = PageReport()
        self._in_title = False

    def _inside_output(self) -> bool:
        return any("cell_output" in classes for _, classes in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = set((dict(attrs).get("class") or "").split())
        if tag == "img" and self._inside_output():
            self.report.output_images += 1
        if tag in ("span", "div") and "math" in classes:
            self.report.formulas += 1
        if tag == "mjx-container":
            self.report.typeset += 1
        source = dict(attrs).get("src") or ""
        if tag == "script" and "mathjax" in source.lower():
            self.report.mathjax_src = source
        if self._inside_output() or "cell_output" in classes:
            bad = classes & BAD_OUTPUT_CLASSES
            if bad and "output" in classes:
                self.report.bad_outputs.append(" ".join(sorted(classes)))
        if tag == "title" and any(name == "head" for name, _ in self.stack):
            self._in_title = True
        if tag not in VOID_ELEMENTS:
            self.stack.append((tag, classes))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                break

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.report.title += data.strip()


def math_verdict(report: PageReport, require_math: bool) -> tuple[bool, str]:
    """``(ok, note)`` for the page's formulas: typeset, or left as TeX with a CDN MathJax."""
    if report.formulas == 0:
        return True, ""
    if report.typeset > 0:
        return True, f"{report.formulas} formula(s) typeset by MathJax"
    remote = report.mathjax_src.startswith(("http://", "https://", "//"))
    if remote and not require_math:
        return True, (
            f"{report.formulas} formula(s) shown as TeX source: accepted, MathJax comes from "
            f"{report.mathjax_src}, which this browser could not load (offline)"
        )
    where = report.mathjax_src or "no MathJax script"
    return False, f"{report.formulas} formula(s) not typeset ({where})"


def find_chromium(explicit: str | None) -> str:
    for candidate in [explicit, "chromium", "chromium-browser", "google-chrome"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)  # type: ignore[return-value]
    raise SystemExit(
        "Chromium not found: install it (Debian: apt-get install -y chromium) or pass --chromium"
    )


def run_chromium(chromium: str, profile: Path, extra: list[str], url: str) -> str:
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"chromium failed on {url} ({result.returncode}): {result.stderr[-2000:]}"
        )
    return result.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html-dir", type=Path, default=REPO_ROOT / "_build" / "html")
    parser.add_argument("--build", action="store_true", help="run scripts/build_book.sh first")
    parser.add_argument("--chromium", help="Chromium executable (default: found on PATH)")
    parser.add_argument(
        "--screenshot-lesson", help="toc entry to screenshot (default: the first lesson)"
    )
    parser.add_argument(
        "--require-math",
        action="store_true",
        help="fail a page whose formulas MathJax did not typeset (default: accept a CDN "
        "MathJax that cannot be reached offline, and say so)",
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        default=REPO_ROOT / "_build" / "screenshots" / "lesson.png",
        help="where the screenshot is written (PNG)",
    )
    args = parser.parse_args(argv)

    lessons = toc_lessons(REPO_ROOT / "_toc.yml")
    if not lessons:
        print("no lessons in _toc.yml", file=sys.stderr)
        return 1
    if args.build or not (args.html_dir / "index.html").exists():
        print("building the book with scripts/build_book.sh")
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "build_book.sh")], check=True)
    chromium = find_chromium(args.chromium)

    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile_dir:
        profile = Path(profile_dir)
        for lesson in lessons:
            page = args.html_dir / f"{lesson}.html"
            if not page.exists():
                failures.append(f"{lesson}: page {page} missing")
                continue
            dom = run_chromium(
                chromium, profile, ["--virtual-time-budget=5000", "--dump-dom"], page.as_uri()
            )
            scanner = OutputScanner()
            scanner.feed(dom)
            report = scanner.report
            status = "ok"
            if report.output_images < 1:
                failures.append(f"{lesson}: no figure in any cell output")
                status = "FAIL"
            if report.bad_outputs:
                failures.append(f"{lesson}: error/stderr outputs: {report.bad_outputs}")
                status = "FAIL"
            math_ok, math_note = math_verdict(report, args.require_math)
            if not math_ok:
                failures.append(f"{lesson}: {math_note}")
                status = "FAIL"
            print(
                f"{status:4} {lesson}: title {report.title!r}, {report.output_images} output "
                f"figure(s), {len(report.bad_outputs)} error/stderr output(s)"
                + (f"; {math_note}" if math_note else "")
            )

        target = args.screenshot_lesson or lessons[0]
        if target not in lessons:
            failures.append(f"--screenshot-lesson {target}: not a lesson in _toc.yml")
        else:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            run_chromium(
                chromium,
                profile,
                [
                    "--virtual-time-budget=5000",
                    "--window-size=1280,2000",
                    f"--screenshot={args.screenshot}",
                ],
                (args.html_dir / f"{target}.html").as_uri(),
            )
            if not args.screenshot.exists() or args.screenshot.stat().st_size == 0:
                failures.append(f"screenshot of {target} not written to {args.screenshot}")
            else:
                print(f"screenshot of {target}: {args.screenshot}")

    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"checked {len(lessons)} lesson page(s): {'all passed' if not failures else 'FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
