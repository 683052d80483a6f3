"""The book's configuration: every lesson is in the toc, every toc entry exists, every citation
and glossary term resolves, execution is strict; and a structural build has zero warnings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((REPO_ROOT / "_config.yml").read_text(encoding="utf-8"))
TOC = yaml.safe_load((REPO_ROOT / "_toc.yml").read_text(encoding="utf-8"))
BIB_TEXT = (REPO_ROOT / "book" / "references.bib").read_text(encoding="utf-8")
GLOSSARY_TEXT = (REPO_ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
REQUIRED_REFERENCES = {
    "wang2022promptehr", "lewis2020bart", "johnson2016mimic", "kendall2018multitask",
    "chen2018gradnorm", "liu2019mtan", "theodorou2023halo", "cms2014mce32",
}  # fmt: skip
REQUIRED_TERMS = {
    "prompt", "x_num", "x_cat", "real-vs-real floor", "JS divergence", "mode collapse", "TSTR",
    "MCE", "auxiliary loss",
}  # fmt: skip


def toc_files(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["file"]] if isinstance(node.get("file"), str) else []
        found += [node["root"]] if isinstance(node.get("root"), str) else []
        return found + [f for value in node.values() for f in toc_files(value)]
    if isinstance(node, list):
        return [f for item in node for f in toc_files(item)]
    return []


TOC_FILES = toc_files(TOC)


def book_sources() -> list[Path]:
    """What the book renders: book/*.md and the lessons' .py sources (the .ipynb is a copy)."""
    return sorted((REPO_ROOT / "book").glob("*.md")) + sorted((REPO_ROOT / "lessons").glob("*.py"))


def bib_keys() -> set[str]:
    return set(re.findall(r"@\w+\{([^,\s]+),", BIB_TEXT))


def glossary_terms() -> set[str]:
    block = GLOSSARY_TEXT.split("```{glossary}", 1)[1].split("```", 1)[0]
    return {line.strip() for line in block.splitlines() if line and not line.startswith(" ")}


def test_every_toc_entry_exists_with_one_source():
    assert TOC_FILES, "_toc.yml lists no files"
    for entry in TOC_FILES:
        assert Path(entry).suffix == "", f"_toc.yml entry {entry!r}: list it without extension"
        matches = [p for p in (REPO_ROOT / entry).parent.glob(Path(entry).name + ".*")
                   if p.suffix in (".md", ".ipynb")]  # fmt: skip
        assert len(matches) == 1, (
            f"_toc.yml entry {entry!r}: expected one .md or .ipynb, got {matches}"
        )


def test_every_lesson_is_in_the_toc():
    lessons = sorted(p for p in (REPO_ROOT / "lessons").glob("*.py") if p.name != "conftest.py")
    assert lessons, "no lessons/*.py"
    for lesson in lessons:
        entry = f"lessons/{lesson.stem}"
        assert entry in TOC_FILES, f"{lesson.name} is not in _toc.yml: add '- file: {entry}'"
    assert len(TOC_FILES) == len(set(TOC_FILES)), "_toc.yml lists a file twice"


def test_only_the_notebook_twin_is_built():
    excluded = CONFIG["exclude_patterns"]
    assert "lessons/*.py" in excluded
    for folder in (
        ".venv",
        "_build",
        "tests",
        "course_lib",
        "data_samples",
        "scripts",
        "benchmarks",
    ):
        assert folder in excluded, f"_config.yml exclude_patterns lacks {folder}"
    assert CONFIG["only_build_toc_files"] is True


def test_execution_is_strict_and_bounded():
    execute = CONFIG["execute"]
    assert execute["execute_notebooks"] in ("cache", "force")
    assert isinstance(execute["timeout"], int) and 0 < execute["timeout"] <= 600
    assert execute["allow_errors"] is False


def test_launch_buttons_and_repository():
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["repository"]["branch"] == "main"
    # The Colab install cell of each lesson installs from the same repository and branch.
    pin = f"git+{CONFIG['repository']['url']}@{CONFIG['repository']['branch']}"
    for lesson in (REPO_ROOT / "lessons").glob("*.py"):
        if lesson.name != "conftest.py":
            assert pin in lesson.read_text(encoding="utf-8"), f"{lesson.name}: install pin != {pin}"


def test_references_and_citations_resolve():
    keys = bib_keys()
    assert REQUIRED_REFERENCES <= keys, f"missing references: {REQUIRED_REFERENCES - keys}"
    assert [p.as_posix() for p in map(Path, CONFIG["bibtex_bibfiles"])] == ["book/references.bib"]
    for source in book_sources():
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", source.read_text(encoding="utf-8")):
            for key in group.split(","):
                assert key.strip() in keys, f"{source.name}: cites unknown key {key.strip()!r}"


def test_glossary_terms_and_term_roles_resolve():
    terms = glossary_terms()
    assert REQUIRED_TERMS <= terms, f"missing glossary terms: {REQUIRED_TERMS - terms}"
    for source in book_sources():
        for role in re.findall(r"\{term\}`([^`]+)`", source.read_text(encoding="utf-8")):
            target = re.search(r"<([^>]+)>$", role)
            term = target.group(1) if target else role
            assert term in terms, f"{source.name}: {{term}} {term!r} is not in the glossary"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("jupyter-book") is None, reason="jupyter-book not installed")
def test_structural_build_has_no_warnings(tmp_path: Path):
    """The CI build (BOOK_EXECUTE=off): toc, references, glossary, cross-references."""
    environment = {**os.environ, "BOOK_EXECUTE": "off", "BOOK_OUTPUT": str(tmp_path)}
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "build_book.sh")],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "build succeeded." in log and "WARNING" not in log.replace("[IPKernelApp] WARNING", "")
    assert (tmp_path / "_build" / "html" / "lessons" / "00_start_here.html").exists()


def load_browser_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "check_book_browser", REPO_ROOT / "scripts" / "check_book_browser.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_browser_check_counts_figures_and_flags_errors():
    check = load_browser_check()
    page = (
        '<html><head><title>00 · Start here</title></head><body><img src="logo.png">'
        '<div class="cell_output docutils container"><img src="figure.png" /></div>'
        '<div class="cell_output docutils container">'
        '<div class="output traceback highlight-ipythontb"><pre>Traceback</pre></div>'
        '<div class="output stderr"><pre>warning</pre></div></div></body></html>'
    )
    scanner = check.OutputScanner()
    scanner.feed(page)
    assert scanner.report.title == "00 · Start here"
    assert scanner.report.output_images == 1  # the logo outside outputs does not count
    assert len(scanner.report.bad_outputs) == 2
    assert check.toc_lessons(REPO_ROOT / "_toc.yml")[0] == "lessons/00_start_here"


def scan(page: str):
    scanner = load_browser_check().OutputScanner()
    scanner.feed(page)
    return scanner.report


def test_browser_check_accepts_an_unreachable_cdn_mathjax_only_explicitly():
    check = load_browser_check()
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    offline = scan(
        f'<html><head><script defer src="{cdn}"></script></head><body>'
        '<span class="math notranslate nohighlight">\\(w_i\\)</span>'
        '<div class="math notranslate nohighlight">\\[L\\]</div></body></html>'
    )
    assert (offline.formulas, offline.typeset, offline.mathjax_src) == (2, 0, cdn)
    ok, note = check.math_verdict(offline, require_math=False)
    assert ok and "accepted" in note and cdn in note
    assert check.math_verdict(offline, require_math=True)[0] is False

    typeset = scan(
        '<span class="math"><mjx-container class="MathJax" jax="CHTML"></mjx-container></span>'
    )
    assert check.math_verdict(typeset, require_math=True) == (
        True,
        "1 formula(s) typeset by MathJax",
    )
    local = scan('<script src="_static/mathjax/tex-chtml.js"></script><span class="math">x</span>')
    assert check.math_verdict(local, require_math=False)[0] is False  # a local copy must work
    assert check.math_verdict(scan("<p>no formulas</p>"), require_math=True) == (True, "")


def test_pages_workflow_publishes_the_executed_book():
    workflow = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "book.yml").read_text())
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    uses = {step.get("uses", "").split("@")[0]: step for step in build["steps"]}
    commands = " ".join(step.get("run", "") for step in build["steps"])
    assert "bash scripts/build_book.sh" in commands and "BOOK_EXECUTE=off" not in commands
    assert "check_book_browser.py --require-math" in commands
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "_build/html"
    assert "actions/configure-pages" in uses
    cached = uses["actions/cache"]["with"]["path"].split()
    assert {"runs/lessons", "_build/.jupyter_cache"} <= set(cached)
    assert deploy["needs"] == "build"
    assert [step["uses"].split("@")[0] for step in deploy["steps"]] == ["actions/deploy-pages"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert workflow["permissions"] == {"contents": "read"}  # the build job cannot publish
