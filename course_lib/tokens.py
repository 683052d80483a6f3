"""The token vocabulary: patients as flat sequences of visit and code tokens (lesson 02).

A patient becomes ``[<patient>, <visit>, c1, c2, </visit>, <visit>, c3, </visit>, </patient>]``.
Ids are laid out in three blocks, so a mask over "all codes" is one slice:

* ``0..6``: the special tokens, with ids fixed for every vocabulary (see the ``*_ID`` constants);
* optional chapter tokens (``<chapter:390-459>``, ``<chapter:V>``...), one per ICD-9 chapter;
* one token per code, most frequent in the training split first (ties by code).

Chapter tokens (off by default) follow a simple scheme: inside a visit, a chapter token is
written before each *run* of consecutive codes of the same chapter, e.g.
``<visit> <chapter:390-459> 4019 4280 <chapter:240-279> 25000 </visit>``. The code order is
kept, so the round trip stays lossless; decoding drops the chapter tokens.

Codes are handled in MIMIC-III's dotless form (``to_dotless`` is applied on the way in).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from course_lib.cohort import Cohort, Patient, Visit
from course_lib.icd9 import CHAPTERS, SUPPLEMENTARY, chapter_of, to_dotless

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
VISIT_START_ID = 3
VISIT_END_ID = 4
MASK_ID = 5
UNK_ID = 6

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<patient>"
EOS_TOKEN = "</patient>"
VISIT_START_TOKEN = "<visit>"
VISIT_END_TOKEN = "</visit>"
MASK_TOKEN = "<mask>"
UNK_TOKEN = "<unk>"

SPECIAL_TOKENS: tuple[str, ...] = (
    PAD_TOKEN,
    BOS_TOKEN,
    EOS_TOKEN,
    VISIT_START_TOKEN,
    VISIT_END_TOKEN,
    MASK_TOKEN,
    UNK_TOKEN,
)
CHAPTER_IDS: tuple[str, ...] = tuple(c[0] for c in CHAPTERS) + tuple(SUPPLEMENTARY)
CHAPTER_TOKENS: tuple[str, ...] = tuple(f"<chapter:{chapter}>" for chapter in CHAPTER_IDS)

FILE_FORMAT = "course_lib.vocabulary"
FILE_VERSION = 1


class VocabularyFileError(ValueError):
    """A vocabulary JSON file that cannot be read back."""


def chapter_token(code: str) -> str:
    """``"4019"`` -> ``"<chapter:390-459>"``."""
    return f"<chapter:{chapter_of(code)}>"


class Vocabulary:
    """Maps tokens to ids and patients to id sequences (and back).

    ``unknown_count`` counts the codes that encoding mapped to ``<unk>`` since the
    vocabulary was made (or since :meth:`reset_unknown_count`); ``unknown_codes`` says which.
    """

    def __init__(
        self,
        codes: Sequence[str],
        *,
        chapter_tokens: bool = False,
        code_counts: dict[str, int] | None = None,
    ) -> None:
        codes = [to_dotless(code) for code in codes]
        duplicates = [code for code, n in Counter(codes).items() if n > 1]
        if duplicates:
            raise ValueError(f"codes must be unique; repeated: {sorted(duplicates)[:5]}")
        self.chapter_tokens = bool(chapter_tokens)
        self.code_counts: dict[str, int] = dict(code_counts or {})
        tokens = list(SPECIAL_TOKENS)
        if self.chapter_tokens:
            tokens += CHAPTER_TOKENS
        self._first_code_id = len(tokens)
        tokens += codes
        self._tokens: list[str] = tokens
        self._token_to_id: dict[str, int] = {token: i for i, token in enumerate(tokens)}
        if len(self._token_to_id) != len(tokens):
            raise ValueError("a code collides with a special or chapter token")
        self.unknown_count = 0
        self.unknown_codes: Counter[str] = Counter()

    # ----------------------------------------------------------------- building
    @classmethod
    def build(
        cls, cohort: Cohort, *, min_count: int = 1, chapter_tokens: bool = False
    ) -> Vocabulary:
        """Vocabulary of the codes seen at least ``min_count`` times in ``cohort``.

        Pass the TRAINING split only: codes that appear only in validation or test must be
        unknown to the model, as they would be for a model deployed on new patients.
        Frequencies count every occurrence (a code in three visits counts three times).
        """
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(to_dotless(code) for patient in cohort for code in patient.codes)
        kept = sorted(
            (code for code, n in counts.items() if n >= min_count),
            key=lambda code: (-counts[code], code),
        )
        return cls(kept, chapter_tokens=chapter_tokens, code_counts={c: counts[c] for c in kept})

    # ------------------------------------------------------------- inspection
    @property
    def size(self) -> int:
        return len(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and self.is_code_id(
            self._token_to_id.get(to_dotless(code), -1)
        )

    @property
    def tokens(self) -> list[str]:
        """Every token string, in id order."""
        return list(self._tokens)

    @property
    def codes(self) -> list[str]:
        """The code strings, in id order (most frequent first)."""
        return self._tokens[self._first_code_id :]

    @property
    def code_ids(self) -> list[int]:
        """Ids of the code tokens: one contiguous range."""
        return list(range(self._first_code_id, len(self._tokens)))

    @property
    def special_ids(self) -> list[int]:
        return list(range(len(SPECIAL_TOKENS)))

    @property
    def chapter_token_ids(self) -> list[int]:
        """Ids of the chapter tokens (empty when they are off)."""
        return list(range(len(SPECIAL_TOKENS), self._first_code_id))

    def is_code_id(self, token_id: int) -> bool:
        return self._first_code_id <= int(token_id) < len(self._tokens)

    def is_chapter_id(self, token_id: int) -> bool:
        return len(SPECIAL_TOKENS) <= int(token_id) < self._first_code_id

    def id_to_token(self, token_id: int) -> str:
        token_id = int(token_id)
        if not 0 <= token_id < len(self._tokens):
            raise ValueError(f"token id {token_id} out of range [0, {len(self._tokens)})")
        return self._tokens[token_id]

    def token_to_id(self, token: str) -> int:
        """Id of any token string (special, chapter or code); ``UNK_ID`` when absent."""
        return self._token_to_id.get(token, UNK_ID)

    def id_to_code(self, token_id: int) -> str:
        """The code string of a code id; ``ValueError`` for special and chapter ids."""
        if not self.is_code_id(token_id):
            raise ValueError(f"token id {int(token_id)} is not a code id")
        return self._tokens[int(token_id)]

    def code_to_id(self, code: str) -> int:
        """Id of a code (dotted or dotless); ``UNK_ID`` when it is not in the vocabulary."""
        token_id = self._token_to_id.get(to_dotless(code), UNK_ID)
        return token_id if self.is_code_id(token_id) else UNK_ID

    def __repr__(self) -> str:
        return (
            f"Vocabulary(size={self.size}, codes={len(self.codes)}, "
            f"chapter_tokens={self.chapter_tokens})"
        )

    # ---------------------------------------------------------------- encoding
    def reset_unknown_count(self) -> None:
        self.unknown_count = 0
        self.unknown_codes.clear()

    @staticmethod
    def _chapter_token_or_none(code: str) -> str | None:
        try:
            return chapter_token(code)
        except ValueError:  # not an ICD-9 code at all: it will be <unk>, with no chapter
            return None

    def encode_visit(self, codes: Iterable[str]) -> list[int]:
        """``[<visit>, (chapter,) code ids..., </visit>]`` for one visit's codes."""
        ids = [VISIT_START_ID]
        previous_chapter = None
        for code in codes:
            code = to_dotless(code)
            if self.chapter_tokens:
                chapter = self._chapter_token_or_none(code)
                if chapter is not None and chapter != previous_chapter:
                    ids.append(self._token_to_id[chapter])
                previous_chapter = chapter
            token_id = self.code_to_id(code)
            if token_id == UNK_ID:
                self.unknown_count += 1
                self.unknown_codes[code] += 1
            ids.append(token_id)
        ids.append(VISIT_END_ID)
        return ids

    def encode_visits(self, visits: Sequence[Sequence[str]]) -> list[int]:
        """``[<patient>, visit..., </patient>]`` for a list of visits (each a list of codes)."""
        ids = [BOS_ID]
        for codes in visits:
            ids += self.encode_visit(codes)
        ids.append(EOS_ID)
        return ids

    def encode_patient(self, patient: Patient) -> list[int]:
        return self.encode_visits([visit.codes for visit in patient.visits])

    # ---------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int], *, keep_unknown: bool = True) -> list[list[str]]:
        """Visits of code strings from an id sequence, tolerant of generated sequences.

        Rules: reading stops at the first ``</patient>``; ``<pad>``, ``<patient>``, ``<mask>``
        and chapter tokens are skipped; ``<visit>`` closes any open visit and opens a new one;
        ``</visit>`` outside a visit is ignored; a code outside a visit opens one; a visit
        still open at the end is closed; empty visits are dropped. ``<unk>`` is decoded as
        the string ``"<unk>"`` when ``keep_unknown`` is true, else dropped.
        Accepts a list, a 1-D tensor or a 1-D array.
        """
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        visits: list[list[str]] = []
        current: list[str] | None = None

        def close() -> None:
            if current:
                visits.append(current)

        for token_id in ids:
            token_id = int(token_id)
            if not 0 <= token_id < len(self._tokens):
                raise ValueError(f"token id {token_id} out of range [0, {len(self._tokens)})")
            if token_id == EOS_ID:
                break
            if token_id == VISIT_START_ID:
                close()
                current = []
            elif token_id == VISIT_END_ID:
                close()
                current = None
            elif token_id == UNK_ID or self.is_code_id(token_id):
                if token_id == UNK_ID and not keep_unknown:
                    continue
                if current is None:
                    current = []
                current.append(self._tokens[token_id])
        close()
        return visits

    def decode_patient(
        self,
        ids: Iterable[int],
        sex: str,
        age: float,
        subject_id: int,
        *,
        visit_ages: Sequence[float] | None = None,
        keep_unknown: bool = False,
    ) -> Patient:
        """A :class:`Patient` from generated ids; every visit gets ``age`` unless
        ``visit_ages`` (one per decoded visit) is given. ``<unk>`` is dropped by default,
        since a patient record holds real codes only."""
        visits = self.decode(ids, keep_unknown=keep_unknown)
        if visit_ages is None:
            visit_ages = [age] * len(visits)
        elif len(visit_ages) != len(visits):
            raise ValueError(
                f"visit_ages has {len(visit_ages)} values but the ids decode to {len(visits)} visits"
            )
        return Patient(
            subject_id=subject_id,
            sex=sex,
            age=age,
            visits=[Visit(codes, float(a)) for codes, a in zip(visits, visit_ages, strict=True)],
        )

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "chapter_tokens": self.chapter_tokens,
            "codes": self.codes,
            "code_counts": self.code_counts,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically (temporary file in the same folder, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(self.to_dict(), out, indent=1)
            os.replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a file written by :meth:`save`; :class:`VocabularyFileError` if malformed."""
        path = Path(path)
        expected = (
            f'a JSON object with "format": "{FILE_FORMAT}", "version": {FILE_VERSION}, '
            '"chapter_tokens" (bool), "codes" (list of unique strings) and "code_counts" (object)'
        )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VocabularyFileError(f"{path}: no such vocabulary file") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise VocabularyFileError(
                f"{path}: not valid JSON ({error}); expected {expected}"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise VocabularyFileError(f"{path}: not a vocabulary file; expected {expected}")
        if data.get("version") != FILE_VERSION:
            raise VocabularyFileError(
                f"{path}: vocabulary file version {data.get('version')!r}, expected {FILE_VERSION}"
            )
        codes = data.get("codes")
        counts = data.get("code_counts", {})
        if (
            not isinstance(codes, list)
            or not all(isinstance(code, str) and code for code in codes)
            or not isinstance(data.get("chapter_tokens"), bool)
            or not isinstance(counts, dict)
            or not all(isinstance(n, int) for n in counts.values())
        ):
            raise VocabularyFileError(f"{path}: malformed vocabulary; expected {expected}")
        try:
            return cls(codes, chapter_tokens=data["chapter_tokens"], code_counts=counts)
        except ValueError as error:
            raise VocabularyFileError(f"{path}: {error}; expected {expected}") from None
