"""Derive the ICD-9-CM tables that ship inside ``course_lib/resources``.

Run once by a maintainer from the repository root::

    python scripts/build_icd9_tables.py ../shared/data/icd9

Sources (US CMS, FY2015 / ICD-9-CM v32, converted to flat files by the MIT-licensed
``nlindner/CMS_Issued_Codes_For_SQL``): ``CMS32_DESC_LONG_SHORT_DX.txt`` and
``mce_v32_age_sex_diagnosis_edits.tsv``. Nothing in the package reads the source folder
at run time; the derived files are committed.
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[1] / "course_lib" / "resources"
MCE_TYPES = {
    "Newborn_Only": "newborn",
    "Pediatric_Only": "pediatric",
    "Maternity_Only": "maternity",
    "Adult_Only": "adult",
    "Female_Only": "female",
    "Male_Only": "male",
}


def main(source: Path) -> None:
    sys.path.insert(0, str(RESOURCES.parents[1]))
    from course_lib.icd9 import chapter_of

    rows = []
    with open(source / "CMS32_DESC_LONG_SHORT_DX.txt", encoding="latin-1") as handle:
        reader = csv.reader(handle, delimiter="|", quotechar='"')
        next(reader)
        for code, long_desc, short_desc in reader:
            rows.append(
                (code.strip(), chapter_of(code.strip()), short_desc.strip(), long_desc.strip())
            )
    text = "code\tchapter\tshort_description\tlong_description\n"
    text += "".join("\t".join(row) + "\n" for row in rows)
    (RESOURCES / "icd9cm_v32_dx.tsv.gz").write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))

    with open(source / "mce_v32_age_sex_diagnosis_edits.tsv", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        edits = sorted({(MCE_TYPES[r["MCE_Edit_Type"]], r["ICD_Code"].strip()) for r in reader})
    with open(RESOURCES / "mce_v32_age_sex_edits.tsv", "w", encoding="utf-8") as out:
        out.write("rule\tcode\n")
        for rule, code in edits:
            out.write(f"{rule}\t{code}\n")
    print(f"{len(rows)} codes, {len(edits)} MCE edits written to {RESOURCES}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/icd9"))
