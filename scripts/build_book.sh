#!/usr/bin/env bash
# Build the Jupyter Book (1.x) into _build/html; any Sphinx warning fails the build (-W).
#
#   bash scripts/build_book.sh                    # executes the lessons, cached in
#                                                 #   _build/.jupyter_cache (re-runs changed ones)
#   BOOK_EXECUTE=off bash scripts/build_book.sh   # no execution: checks toc, references,
#                                                 #   glossary and cross-references only
#   BOOK_EXECUTE=force bash scripts/build_book.sh # re-executes every lesson
#   BOOK_OUTPUT=/tmp/book bash scripts/build_book.sh  # build into /tmp/book/_build/html
#
# CI executes each lesson once: `pytest --nbval-lax lessons/` runs them (and fails on any
# error), and the CI book build uses BOOK_EXECUTE=off. With execution off the pages have no
# outputs, so `{glue}` references cannot be resolved: that build ignores the "glue key not
# found" warnings (mystnb.glue) and nothing else. The published book (and
# scripts/check_book_browser.py) uses the default, executed build.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${BOOK_EXECUTE:-cache}"
case "$mode" in
    cache | force | off | auto) ;;
    *) echo "BOOK_EXECUTE=$mode: expected one of cache, force, off, auto" >&2; exit 2 ;;
esac

config="_config.yml"
output="."  # the executed book: _build/html
if [[ "$mode" == "off" ]]; then
    output="_build/no_execution"  # keeps the executed book in _build/html intact
fi
output="${BOOK_OUTPUT:-$output}"  # the book goes to $output/_build/html
if [[ "$mode" != "cache" ]]; then
    # A copy of _config.yml with only the execution mode changed; Sphinx resolves the paths
    # inside it (book/references.bib) from the book's root, not from the file's folder.
    mkdir -p "$output/_build"
    config="$output/_build/_config.$mode.yml"
    python - "$mode" "$config" <<'PY'
import sys

import yaml

mode, out_path = sys.argv[1], sys.argv[2]
with open("_config.yml", encoding="utf-8") as config_file:
    config = yaml.safe_load(config_file)
config["execute"]["execute_notebooks"] = mode
if mode == "off":
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["suppress_warnings"] = ["mystnb.glue"]
with open(out_path, "w", encoding="utf-8") as out_file:
    yaml.safe_dump(config, out_file, sort_keys=False)
PY
fi

echo "building the book (execute_notebooks: $mode, config: $config, into $output/_build/html)"
jupyter-book build . --config "$config" --toc _toc.yml --path-output "$output" \
    -W --keep-going --builder html
