"""Reading one MIMIC-III CSV table so that every failure names the file, the row and the fix
(lesson 01; used by :mod:`course_lib.mimic`).

Real exports reach users gzipped or plain, re-saved by spreadsheets (UTF-16, Latin-1, a cut
last line), with upper- or lower-case headers. Each of those ends here in a
:class:`MimicFormatError` saying what was found, where, what was expected and what to do,
never in a pandas or codec traceback.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
GZIP_MAGIC = b"\x1f\x8b"
INT64_MAX = np.iinfo(np.int64).max
SNIFF_BYTES = 65536
QUOTE_FIX = "put a field that holds a comma in double quotes, or remove the extra field"
UTF8_FIX = "re-save it as UTF-8 (e.g. `iconv -f {source} -t UTF-8 IN > OUT`)"


class MimicFormatError(ValueError):
    """A MIMIC-III file that cannot be read: the message names the file, the row and what was
    expected."""


def where(path: Path, row: int) -> str:
    """``row`` is the 0-based position in the data; the message counts from 1."""
    return f"{path}: data row {row + 1} (1-based, header not counted)"


def find_file(directory: Path, name: str) -> Path | None:
    for candidate in (directory / f"{name}.csv", directory / f"{name}.csv.gz"):
        if candidate.is_file():
            return candidate
    return None


def _open_text(path: Path):
    """The file as UTF-8 text (a UTF-8 byte-order mark dropped), gunzipped for ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _head_bytes(path: Path) -> bytes:
    """The first bytes of the (decompressed) file; a .gz that is not gzip is refused here."""
    with open(path, "rb") as stream:
        raw = stream.read(SNIFF_BYTES)
    if path.suffix == ".gz":
        if not raw.startswith(GZIP_MAGIC):
            raise MimicFormatError(
                f"{path}: not gzip-compressed although the name ends in .gz (expected a gzip "
                f"file); rename it to {path.name[:-3]} if it is plain CSV text"
            )
        try:
            with gzip.open(path, "rb") as stream:
                return stream.read(SNIFF_BYTES)
        except (OSError, EOFError, zlib.error) as error:
            raise MimicFormatError(
                f"{path}: the gzip data is damaged or cut ({error}); download or copy the "
                "file again"
            ) from error
    if raw.startswith(GZIP_MAGIC):
        raise MimicFormatError(
            f"{path}: the file is gzip-compressed but named .csv (expected plain CSV text); "
            f"rename it to {path.name}.gz"
        )
    return raw


def check_encoding(path: Path) -> None:
    """Refuse UTF-16/32 and binary files up front, naming the encoding and the fix."""
    head = _head_bytes(path)
    for bom, name in (
        (codecs.BOM_UTF32_LE, "UTF-32"),
        (codecs.BOM_UTF32_BE, "UTF-32"),
        (codecs.BOM_UTF16_LE, "UTF-16"),
        (codecs.BOM_UTF16_BE, "UTF-16"),
    ):
        if head.startswith(bom):
            raise MimicFormatError(
                f"{path}: the file is {name}-encoded (a {name} byte-order mark; expected UTF-8 "
                f"text): {UTF8_FIX.format(source=name)}"
            )
    if b"\x00" in head:
        raise MimicFormatError(
            f"{path}: the file holds NUL bytes, so it is UTF-16 without a byte-order mark or "
            f"not text at all (expected UTF-8 CSV text): {UTF8_FIX.format(source='UTF-16')}"
        )


def _decode_error(path: Path, error: UnicodeDecodeError) -> MimicFormatError:
    """Name the first physical line that is not UTF-8 (the text reader decodes ahead)."""
    byte = error.object[error.start : error.start + 1].hex().upper()
    line = None
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                line, byte = number, raw[bad.start : bad.start + 1].hex().upper()
                break
    at = f"line {line} (the header is line 1)" if line else "a line"
    return MimicFormatError(
        f"{path}: {at}: byte 0x{byte} is not UTF-8, so the file is probably Latin-1 or "
        f"Windows-1252 encoded (expected UTF-8 text): {UTF8_FIX.format(source='LATIN1')}"
    )


def check_field_counts(path: Path) -> None:
    """Refuse a row with fewer fields than the header (pandas would pad it with empty cells),
    and a byte that is not UTF-8 (naming its line).

    One pass of the C csv reader; quoted commas and line breaks are handled as pandas does.
    """
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        try:
            header = next(reader, None)
            lengths = set(map(len, reader))
        except UnicodeDecodeError as error:
            raise _decode_error(path, error) from error
        except csv.Error as error:
            raise MimicFormatError(
                f"{path}: line {reader.line_num}: {error} (expected CSV text with "
                "double-quoted fields)"
            ) from error
    if header is None:
        return  # an empty file: pandas' error to report
    expected = len(header)
    if all(length in (0, expected) or length > expected for length in lengths):
        return  # blank lines are skipped by pandas; longer rows are pandas' error to report
    with _open_text(path) as stream:
        reader = csv.reader(stream)
        next(reader)
        data_row = 0
        for fields in reader:
            if not fields:
                continue
            if len(fields) < expected:
                missing = ", ".join(header[len(fields) :])
                raise MimicFormatError(
                    f"{path}: line {reader.line_num} (the header is line 1; data row "
                    f"{data_row + 1}): {len(fields)} fields, expected {expected} as in the header "
                    f"({', '.join(header)}); missing {missing}: the row looks cut, so "
                    "re-export the file or remove that row"
                )
            data_row += 1


def read_csv_checked(path: Path, **options) -> pd.DataFrame:
    """``pd.read_csv`` whose failures become a MimicFormatError naming ``path``."""
    try:
        return pd.read_csv(path, encoding="utf-8-sig", **options)
    except pd.errors.EmptyDataError as error:
        raise MimicFormatError(f"{path}: the file is empty (expected a header line)") from error
    except UnicodeDecodeError as error:
        raise _decode_error(path, error) from error
    except (pd.errors.ParserError, ValueError, OSError, EOFError, zlib.error) as error:
        raise MimicFormatError(f"{path}: {describe_parser_error(error)}") from error


def read_header(path: Path) -> list[str]:
    """The header's column names after the encoding checks."""
    check_encoding(path)
    header = read_csv_checked(path, nrows=0)
    return [str(column) for column in header.columns]


def check_short_rows(path: Path, table: pd.DataFrame) -> None:
    """Run :func:`check_field_counts` only when a row could be cut: pandas pads a short row
    with empty cells, so its last column is empty. Real PATIENTS and ADMISSIONS never have an
    empty last column, which saves a pass over them."""
    if len(table.columns) == 0:
        return
    last = table.iloc[:, -1]
    if bool((last.isna() | last.astype(str).eq("")).any()):
        check_field_counts(path)


def read_table(directory: Path, name: str, required: tuple[str, ...]) -> tuple[Path, pd.DataFrame]:
    """Read the ``required`` columns of NAME.csv(.gz) (index = 0-based data row).

    ID columns (those ending in ``_ID`` or ``_NUM``) are left to pandas' C number parser, with
    empty cells as NaN; every other column is read as text with empty cells as ``""``.
    All columns are parsed, not only ``required``: pandas' ``usecols`` would silently accept
    rows with too many fields; rows with too few are refused by :func:`check_field_counts`.
    """
    path = find_file(directory, name)
    if path is None:
        raise MimicFormatError(
            f"{directory / (name + '.csv')}: file not found (expected {name}.csv or "
            f"{name}.csv.gz in {directory})"
        )
    try:
        columns = read_header(path)
    except MimicFormatError as error:
        if "file is empty" in str(error):
            raise MimicFormatError(
                f"{path}: the file is empty (expected a header with {', '.join(required)})"
            ) from error
        raise
    by_name: dict[str, str] = {}
    for column in columns:
        key = column.strip().upper()
        if key in by_name and key in required:
            raise MimicFormatError(
                f"{path}: header line: column {key} appears twice ({by_name[key]!r} and "
                f"{column!r}; headers are matched case-insensitively); expected it once"
            )
        by_name[key] = column
    missing = [column for column in required if column not in by_name]
    if missing:
        raise MimicFormatError(
            f"{path}: header line: missing column(s) {', '.join(missing)} "
            f"(expected {', '.join(required)}; found {', '.join(columns)})"
        )
    numeric = {by_name[column] for column in required if column.endswith(("_ID", "_NUM"))}
    table = read_csv_checked(
        path,
        dtype={column: str for column in columns if column not in numeric},
        keep_default_na=False,
        na_values={column: [""] for column in numeric},
    )
    check_short_rows(path, table)
    if not table.index.equals(pd.RangeIndex(len(table))):  # pandas took column 1 as index
        raise MimicFormatError(
            f"{where(path, 0)}: more fields than the header's {len(table.columns)} "
            f"(expected one field per header column); {QUOTE_FIX}"
        )
    if table.empty:
        raise MimicFormatError(f"{path}: no data rows (expected at least one row after the header)")
    table = table[[by_name[column] for column in required]]
    table.columns = list(required)
    return path, table


def describe_parser_error(error: Exception) -> str:
    """pandas says ``Expected 8 fields in line 4, saw 9``: keep the line, say how it counts."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if found:
        expected, line, saw = found.groups()
        return (
            f"line {line} (the header is line 1): expected {expected} fields as in the "
            f"header, saw {saw}; {QUOTE_FIX}"
        )
    text = " ".join(str(error).split())
    return f"not a readable CSV file ({type(error).__name__}: {text})"


def integers(path: Path, table: pd.DataFrame, column: str, *, allow_empty: bool = False):
    """The column as int64 (Int64 with NA for empty cells when ``allow_empty``)."""
    values = table[column]
    expected = "a whole number" + (" or empty" if allow_empty else "")
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        if values.dtype == np.uint64 and (values > INT64_MAX).any():  # 2^63 .. 2^64 - 1
            _too_big(path, column, values, values > INT64_MAX)
        return values.astype("Int64") if allow_empty else values.astype("int64")
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(str)
    # A float column (empty cells, 1.0), text (a non-number) or Python ints past 2^64.
    numbers = pd.to_numeric(values.astype(object), errors="coerce").astype(float)
    empty = values.isna()  # read_csv turned empty cells of ID columns into NaN
    bad = (numbers.isna() & ~empty) | (numbers.notna() & (numbers % 1 != 0))
    if not allow_empty:
        bad |= empty
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        shown = "" if empty.iloc[row] else values.iloc[row]
        raise MimicFormatError(f"{where(path, row)}: {column} must be {expected}, got {shown!r}")
    if (numbers.abs() >= 2.0**63).any():
        _too_big(path, column, values, numbers.abs() >= 2.0**63)
    exact = pd.to_numeric(values.astype(object), errors="coerce")  # no float rounding of ids
    return exact.astype("Int64") if allow_empty else exact.astype("int64")


def _too_big(path: Path, column: str, values: pd.Series, too_big: pd.Series) -> None:
    row = int(np.flatnonzero(too_big.to_numpy())[0])
    raise MimicFormatError(
        f"{where(path, row)}: {column} must be a whole number of at most {INT64_MAX}, "
        f"got {values.iloc[row]}"
    )


def normalised(values: pd.Series, normalise) -> pd.Series:
    """Apply ``normalise`` to each distinct value only: MIMIC-III's 651k diagnosis rows hold
    ~7k distinct codes, and pandas' string methods loop over every cell in Python."""
    positions, distinct = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=False)
    mapped = np.array([normalise(value) for value in distinct], dtype=object)
    return pd.Series(mapped[positions], index=values.index, dtype=object)


def datetimes(path: Path, table: pd.DataFrame, column: str) -> pd.Series:
    """The column parsed as ``YYYY-MM-DD HH:MM:SS`` (or a bare ``YYYY-MM-DD``)."""
    text = table[column]
    stamps = pd.to_datetime(text, format=DATE_FORMAT, errors="coerce")
    retry = stamps.isna() & text.ne("")
    if retry.any():
        stamps[retry] = pd.to_datetime(text[retry], format="%Y-%m-%d", errors="coerce")
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raise MimicFormatError(
            f"{where(path, row)}: {column} must be a date 'YYYY-MM-DD HH:MM:SS', "
            f"got {text.iloc[row]!r}"
        )
    return stamps


def first_duplicate(path: Path, keys: pd.DataFrame, what: str) -> None:
    """Raise on the first row whose ``keys`` repeat an earlier row (index = data row)."""
    repeats = keys.duplicated()
    if repeats.any():
        row = repeats.idxmax()
        values = keys.loc[row]
        earlier = (keys == values).all(axis=1).idxmax()
        described = ", ".join(f"{column} {values[column]}" for column in keys.columns)
        raise MimicFormatError(
            f"{where(path, int(row))}: {described} repeats data row {int(earlier) + 1} "
            f"(expected {what})"
        )
