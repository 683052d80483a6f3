"""ICD-9-CM diagnosis codes, chapters and the Medicare Code Editor age/sex rules (lesson 01).

Codes are kept in MIMIC-III's dotless form (``4019``, ``V3000``, ``E8889``) everywhere in
the library; :func:`to_dotted` and :func:`to_dotless` convert for display and input.
The tables in ``resources/`` were derived from the CMS FY2015 (v32) files by
``scripts/build_icd9_tables.py``; see ``resources/PROVENANCE.md``.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

# (chapter id, first 3-digit category, last category, title). V and E codes are the two
# supplementary classifications.
CHAPTERS: tuple[tuple[str, int, int, str], ...] = (
    ("001-139", 1, 139, "Infectious and parasitic diseases"),
    ("140-239", 140, 239, "Neoplasms"),
    ("240-279", 240, 279, "Endocrine, nutritional, metabolic and immunity disorders"),
    ("280-289", 280, 289, "Diseases of the blood and blood-forming organs"),
    ("290-319", 290, 319, "Mental disorders"),
    ("320-389", 320, 389, "Diseases of the nervous system and sense organs"),
    ("390-459", 390, 459, "Diseases of the circulatory system"),
    ("460-519", 460, 519, "Diseases of the respiratory system"),
    ("520-579", 520, 579, "Diseases of the digestive system"),
    ("580-629", 580, 629, "Diseases of the genitourinary system"),
    ("630-679", 630, 679, "Complications of pregnancy, childbirth and the puerperium"),
    ("680-709", 680, 709, "Diseases of the skin and subcutaneous tissue"),
    ("710-739", 710, 739, "Diseases of the musculoskeletal system and connective tissue"),
    ("740-759", 740, 759, "Congenital anomalies"),
    ("760-779", 760, 779, "Certain conditions originating in the perinatal period"),
    ("780-799", 780, 799, "Symptoms, signs and ill-defined conditions"),
    ("800-999", 800, 999, "Injury and poisoning"),
)
SUPPLEMENTARY = {
    "V": "Supplementary: factors influencing health status (V codes)",
    "E": "Supplementary: external causes of injury (E codes)",
}
CHAPTER_TITLES: dict[str, str] = {c[0]: c[3] for c in CHAPTERS} | SUPPLEMENTARY

# MCE v32 age ranges in whole years (inclusive). Maternity codes are also female-only
# in the MCE's sex lists, so the sex check covers that half.
AGE_RULES: dict[str, tuple[int, int]] = {
    "newborn": (0, 0),
    "pediatric": (0, 17),
    "maternity": (12, 55),
    "adult": (15, 124),
}
SEX_RULES: dict[str, str] = {"female": "F", "male": "M"}


def chapter_of(code: str) -> str:
    """Return the chapter id (``"390-459"``, ``"V"`` or ``"E"``) of a dotless or dotted code."""
    code = code.strip().upper()
    if not code:
        raise ValueError("empty ICD-9 code")
    if code[0] in SUPPLEMENTARY:
        return code[0]
    head = code.split(".")[0][:3]
    if not head.isdigit():
        raise ValueError(f"not an ICD-9-CM diagnosis code: {code!r}")
    category = int(head)
    for chapter, first, last, _ in CHAPTERS:
        if first <= category <= last:
            return chapter
    raise ValueError(f"not an ICD-9-CM diagnosis code: {code!r}")


def _head_length(code: str) -> int:
    return 4 if code.startswith("E") else 3


def to_dotted(code: str) -> str:
    """``4019`` -> ``401.9``, ``V3000`` -> ``V30.00``, ``E8889`` -> ``E888.9``, ``042`` -> ``042``."""
    code = code.strip().upper().replace(".", "")
    head = _head_length(code)
    return code if len(code) <= head else f"{code[:head]}.{code[head:]}"


def to_dotless(code: str) -> str:
    """``401.9`` -> ``4019``: MIMIC-III's storage form."""
    return code.strip().upper().replace(".", "")


@dataclass(frozen=True)
class CodeInfo:
    code: str
    chapter: str
    short_description: str
    long_description: str


@lru_cache(maxsize=1)
def code_table() -> dict[str, CodeInfo]:
    """All 14,567 ICD-9-CM v32 diagnosis codes, keyed by dotless code."""
    path = resources.files("course_lib.resources") / "icd9cm_v32_dx.tsv.gz"
    with path.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return {row["code"]: CodeInfo(**row) for row in reader}


@lru_cache(maxsize=1)
def mce_rules() -> dict[str, frozenset[str]]:
    """MCE v32 edit lists: rule name -> set of dotless codes."""
    path = resources.files("course_lib.resources") / "mce_v32_age_sex_edits.tsv"
    rules: dict[str, set[str]] = {name: set() for name in (*AGE_RULES, *SEX_RULES)}
    with path.open("r", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            rules[row["rule"]].add(row["code"])
    return {name: frozenset(codes) for name, codes in rules.items()}


@lru_cache(maxsize=1)
def _rules_by_code() -> dict[str, tuple[str, ...]]:
    by_code: dict[str, list[str]] = {}
    for rule, codes in mce_rules().items():
        for code in codes:
            by_code.setdefault(code, []).append(rule)
    return {code: tuple(sorted(rules)) for code, rules in by_code.items()}


def is_known_code(code: str) -> bool:
    return to_dotless(code) in code_table()


def describe(code: str) -> str:
    """Short CMS description, or ``"(unknown code)"``."""
    info = code_table().get(to_dotless(code))
    return info.short_description if info else "(unknown code)"


def rules_for(code: str) -> tuple[str, ...]:
    """Names of the MCE rules that restrict ``code`` (empty when it is valid for everyone)."""
    return _rules_by_code().get(to_dotless(code), ())


def check_code(code: str, age: float, sex: str) -> str | None:
    """Return ``None`` when ``code`` is valid for a patient of ``age`` years and ``sex``
    (``"F"``/``"M"``), else the name of the MCE rule it breaks (``"newborn"``, ``"male"``...).

    Ages are compared as whole years (``int(age)``), as the MCE does.
    """
    if sex not in ("F", "M"):
        raise ValueError(f"sex must be 'F' or 'M', got {sex!r}")
    years = int(age)
    for rule in rules_for(code):
        if rule in AGE_RULES:
            low, high = AGE_RULES[rule]
            if not low <= years <= high:
                return rule
        elif SEX_RULES[rule] != sex:
            return rule
    return None


def is_valid_for(code: str, age: float, sex: str) -> bool:
    return check_code(code, age, sex) is None
