"""Text objects read as bytes, without a decoded copy: encodings, CSV record boundaries, line numbers.

The parser (:mod:`rentlake.parsing`) hands CSV to pyarrow, which splits records fast but says neither
which line a record came from nor how long the longest record is. :func:`index_records` finds both in
one pass over the bytes, with the record rules pyarrow applies (RFC 4180 quoting, where a quote opens a
quoted value only at the start of a field; ``\\n``, ``\\r\\n`` and a lone ``\\r`` end a line; empty lines
are no records), so that every row keeps the line it came from whatever blank lines or quoted newlines
come before it.

Text is UTF-8, Windows-1252 ("Latin-1") or a mix of both, line by line: :func:`is_utf8` checks the first
without building the text, and :class:`Utf8Stream` gives pyarrow the bytes as UTF-8, re-encoding only
the lines that are not (a window of the text with no UTF-8 in it, the usual Latin-1 file, is re-encoded
whole: a line at a time cost ~100 ms a megabyte). Standard library and numpy only; no I/O.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, field

import numpy as np

Buffer = bytes | bytearray | memoryview

BOM = b"\xef\xbb\xbf"
# Bytes scanned at a time: a few arrays of this size exist at once (a few tens of MB), whatever the object.
WINDOW = 8 << 20
_QUOTE, _LF, _CR = 34, 10, 13


def bom_length(data: Buffer) -> int:
    """3 when ``data`` starts with the UTF-8 byte order mark, else 0."""
    return 3 if bytes(memoryview(data)[:3]) == BOM else 0


def is_utf8(data: Buffer, start: int = 0) -> bool:
    """Whether ``data[start:]`` is valid UTF-8, decoded window by window (no copy of the whole text)."""
    view = memoryview(data)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for pos in range(start, len(view), WINDOW):
            decoder.decode(view[pos : pos + WINDOW])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def decode_line(line: bytes) -> tuple[str, str]:
    """A line as text, and how it was written: ``ascii``, ``utf-8`` or ``latin-1`` (Windows-1252)."""
    if line.isascii():
        return line.decode("ascii"), "ascii"
    try:
        return line.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return line.decode("cp1252", errors="replace"), "latin-1"


def encoding_name(latin_lines: int, utf8_lines: int) -> str:
    """The encoding a file is reported in, from its count of Latin-1 and of non-ASCII UTF-8 lines."""
    if not latin_lines:
        return "utf-8"
    return "mixed utf-8/latin-1" if utf8_lines else "latin-1"


class Utf8Stream(io.RawIOBase):
    """A read-only stream of ``data[start:]`` as UTF-8: lines that are UTF-8 pass as they are, the others
    are decoded as Windows-1252 and re-encoded. Memory: one window at a time.

    ``latin_lines`` counts the lines re-encoded, ``utf8_parts`` the windows or lines kept that hold
    non-ASCII UTF-8 (both zero or not is what :attr:`encoding` needs).
    """

    def __init__(self, data: bytes, start: int = 0, window: int = 1 << 20) -> None:
        super().__init__()
        self._data = data
        self._pos = start
        self._window = window
        self._out = b""
        self._out_pos = 0
        self.latin_lines = 0
        self.utf8_parts = 0

    def readable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        """The encoding found so far (final once the stream is read to its end)."""
        return encoding_name(self.latin_lines, self.utf8_parts)

    def readinto(self, buffer: Buffer) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        while self._out_pos >= len(self._out):
            if self._pos >= len(self._data):
                return 0
            self._out, self._out_pos = self._next_window(), 0
        n = min(len(target), len(self._out) - self._out_pos)
        target[:n] = self._out[self._out_pos : self._out_pos + n]
        self._out_pos += n
        return n

    def _next_window(self) -> bytes:
        end = cut_window(self._data, self._pos, self._pos + self._window)
        raw = self._data[self._pos : end]
        self._pos = end
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._transcode(raw)
        self.utf8_parts += 0 if raw.isascii() else 1
        return raw

    def _transcode(self, raw: bytes) -> bytes:
        if not may_hold_utf8(raw):
            # No line of the window can be UTF-8 beyond ASCII, so each line is ASCII (the same in
            # Windows-1252) or Windows-1252: the window is decoded whole, as its lines one by one would be
            # (a single-byte code decodes each byte on its own), at a small fraction of their cost.
            self.latin_lines += lines_with_high_bytes(raw)
            return raw.decode("cp1252", errors="replace").encode("utf-8")
        lines = raw.split(b"\n")
        for i, line in enumerate(lines):
            text, how = decode_line(line)
            if how == "latin-1":
                self.latin_lines += 1
                lines[i] = text.encode("utf-8")
            elif how == "utf-8":
                self.utf8_parts += 1
        return b"\n".join(lines)


def may_hold_utf8(data: bytes) -> bool:
    """Whether ``data`` holds a UTF-8 lead byte followed by a continuation byte: text without one has no
    character of UTF-8 beyond ASCII (Windows-1252 text has one only where it reads as mojibake, "Ã©")."""
    codes = np.frombuffer(data, dtype=np.uint8)
    lead = (codes[:-1] >= 0xC2) & (codes[:-1] <= 0xF4)
    return bool((lead & ((codes[1:] & 0xC0) == 0x80)).any())


def lines_with_high_bytes(data: bytes) -> int:
    """How many of the lines of ``data`` hold a byte beyond ASCII."""
    codes = np.frombuffer(data, dtype=np.uint8)
    high = np.flatnonzero(codes >= 0x80)
    if not high.size:
        return 0
    line = np.searchsorted(np.flatnonzero(codes == 0x0A), high)
    return int(np.count_nonzero(np.diff(line))) + 1


def cut_window(data: bytes, start: int, end: int) -> int:
    """Where to end a window of ``data`` that starts at ``start``, near ``end``: after its last line end,
    else never inside a UTF-8 sequence (a line longer than the window is cut between characters)."""
    if end >= len(data):
        return len(data)
    nl = max(data.rfind(b"\n", start, end), data.rfind(b"\r", start, end))
    if nl >= 0:
        return nl + 1
    while end > start + 1 and data[end] & 0xC0 == 0x80:  # a continuation byte: back to its lead byte
        end -= 1
    return end


# ------------------------------------------------------------------------------------ CSV records
@dataclass
class RecordIndex:
    """Where the records of a CSV object are, and what sizes the parser must be ready for.

    Record ``r`` (1-based; the header is record 1 and empty lines are no records, as pyarrow numbers them)
    starts on line ``r + offset[k]``, ``at[k]`` being the last change point at or before ``r``: a file
    without blank lines or quoted newlines has one change point, each blank line or multi-line record
    adds one.
    """

    records: int = 0
    header_end_line: int = 1
    longest: int = 0
    non_ascii: bool = False
    unterminated_quote_line: int | None = None
    at: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def line_of(self, ordinals: np.ndarray) -> np.ndarray:
        """The line each record (given by its ordinal) starts on."""
        ordinals = np.asarray(ordinals, dtype=np.int64)
        if not self.at.size:
            return ordinals
        k = np.searchsorted(self.at, ordinals, side="right") - 1
        return ordinals + self.offset[np.maximum(k, 0)]


@dataclass
class _ScanState:
    """What one window of the scan hands to the next."""

    in_quote: bool = False
    exact: bool = False  # parity no longer matches the parser's rules: walk the quotes one by one
    skip_quote: int = -1  # the second quote of an escaped pair, when it falls in the next window
    breaks: int = 0  # line ends before the window
    records: int = 0
    header_start: int | None = None
    last_start: int | None = None
    last_offset: int | None = None
    open_line: int | None = None  # the line of the quote still open
    at: list[np.ndarray] = field(default_factory=list)
    offset: list[np.ndarray] = field(default_factory=list)


def index_records(data: bytes, delimiter: str, start: int = 0) -> RecordIndex:
    """Index the records of CSV bytes (:class:`RecordIndex`), window by window.

    Parameters
    ----------
    data
        The object (UTF-8 or Latin-1: every byte the rules look at is ASCII in both).
    delimiter
        The field delimiter (one ASCII character).
    start
        Where the text starts (after a byte order mark).
    """
    arr = np.frombuffer(data, dtype=np.uint8)
    out = RecordIndex()
    state = _ScanState()
    for lo in range(start, len(arr), WINDOW):
        _scan_window(arr, lo, min(lo + WINDOW, len(arr)), start, ord(delimiter), state, out)
    if state.last_start is not None:
        out.longest = max(out.longest, len(arr) - state.last_start)
    out.records = state.records
    out.unterminated_quote_line = state.open_line if state.in_quote else None
    if state.at:
        out.at, out.offset = np.concatenate(state.at), np.concatenate(state.offset)
    return out


def simple_index(data: bytes, start: int = 0) -> RecordIndex | None:
    """The :class:`RecordIndex` of CSV bytes laid out the common way, found in one vectorised pass over the
    line ends; None when the text is not laid out so (then :func:`index_records` is needed).

    The common way: no quote anywhere, no blank line (the text starts with its header, and no line end
    follows another), and lines ended by ``\\n`` or ``\\r\\n`` only. Then every line is one record, record
    ``r`` starts on line ``r``, and the records are counted by their line ends (plus an unterminated last
    line); ``longest`` is the longest line, its line end included.

    Parameters
    ----------
    data
        The object (UTF-8 or Latin-1).
    start
        Where the text starts (after a byte order mark).
    """
    n = len(data)
    if start >= n or data[start] in (_LF, _CR) or data.find(b'"', start) >= 0:
        return None
    crlf = data.find(b"\r", start) >= 0
    if crlf and data.count(b"\r", start) != data.count(b"\r\n", start):  # a lone \r ends a line too
        return None
    arr = np.frombuffer(data, dtype=np.uint8)
    prev, records, longest = start - 1, 0, 0
    for lo in range(start, n, WINDOW):
        ends = np.flatnonzero(arr[lo : lo + WINDOW] == _LF) + lo
        if not ends.size:
            continue
        gaps = np.diff(ends, prepend=prev)
        if (gaps == 1).any() or (crlf and (arr[ends[gaps == 2] - 1] == _CR).any()):
            return None  # a blank line: no record, but a line
        longest = max(longest, int(gaps.max()))
        prev, records = int(ends[-1]), records + ends.size
    if prev < n - 1:  # a last line without its line end
        longest, records = max(longest, n - 1 - prev), records + 1
    non_ascii = not data.isascii() if start == 0 else bool(arr[start:].max() >= 128)
    return RecordIndex(records=records, header_end_line=1, longest=longest, non_ascii=non_ascii)


def _byte_at(arr: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``arr[pos]``, with a line end past the last byte (the end of the text ends a line)."""
    out = arr[np.minimum(pos, len(arr) - 1)]
    return np.where(pos >= len(arr), _LF, out)


def _breaks(arr: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Positions of the line ends in ``arr[lo:hi]``: every ``\\n``, and a ``\\r`` not followed by one."""
    w = arr[lo:hi]
    lf = np.flatnonzero(w == _LF) + lo
    cr = np.flatnonzero(w == _CR) + lo
    if not cr.size:
        return lf
    alone = cr[_byte_at(arr, cr + 1) != _LF]
    return np.sort(np.concatenate([lf, alone]))


def _scan_window(
    arr: np.ndarray, lo: int, hi: int, start: int, delim: int, state: _ScanState, out: RecordIndex
) -> None:
    w = arr[lo:hi]
    out.non_ascii = out.non_ascii or bool((w >= 128).any())
    breaks = _breaks(arr, lo, hi)
    quotes = np.flatnonzero(w == _QUOTE) + lo
    if state.skip_quote >= 0 and quotes.size and quotes[0] == state.skip_quote:
        quotes = quotes[1:]
    state.skip_quote = -1
    was_in_quote = state.in_quote
    toggles = _toggles(arr, quotes, start, delim, state)
    if toggles.size and state.in_quote:
        state.open_line = 1 + state.breaks + int(np.searchsorted(breaks, toggles[-1]))
    # A line end ends a record when an even number of quote toggles come before it.
    if toggles.size or was_in_quote:
        end_index = np.flatnonzero((np.searchsorted(toggles, breaks) + was_in_quote) % 2 == 0)
    else:
        end_index = np.arange(breaks.size)
    ends = breaks[end_index]
    starts = ends + 1
    lines = 2 + state.breaks + end_index  # a record after the j-th line end starts on the next line
    if lo == start:
        starts = np.concatenate([np.array([start], dtype=np.int64), starts])
        lines = np.concatenate([np.array([1], dtype=np.int64), lines])
    nxt = _byte_at(arr, starts)  # an empty record (a blank line, or the end) begins with a line end
    keep = (starts < len(arr)) & (nxt != _LF) & (nxt != _CR)
    starts, lines = starts[keep], lines[keep]
    _header_end(ends, breaks, starts, state, out)
    if starts.size:
        ordinals = state.records + 1 + np.arange(starts.size, dtype=np.int64)
        _record_changes(lines - ordinals, ordinals, state)
        prev = state.last_start if state.last_start is not None else int(starts[0])
        out.longest = max(out.longest, int(np.diff(starts, prepend=prev).max()))
        state.last_start = int(starts[-1])
        state.records += starts.size
    state.breaks += breaks.size


def _header_end(
    ends: np.ndarray, breaks: np.ndarray, starts: np.ndarray, state: _ScanState, out: RecordIndex
) -> None:
    """Record the line the header (the first record) ends on, once its end is seen."""
    if state.header_start is None and state.records == 0 and starts.size:
        state.header_start = int(starts[0])
    if state.header_start is None or state.header_start < 0:
        return
    after = ends[ends >= state.header_start]
    if after.size:
        out.header_end_line = 1 + state.breaks + int(np.searchsorted(breaks, after[0]))
        state.header_start = -1  # found


def _record_changes(offsets: np.ndarray, ordinals: np.ndarray, state: _ScanState) -> None:
    """Keep the ordinals where the line offset changes."""
    first = state.last_offset if state.last_offset is not None else offsets[0] - 1
    prev = np.concatenate([np.array([first], dtype=np.int64), offsets[:-1]])
    change = offsets != prev
    if change.any():
        state.at.append(ordinals[change])
        state.offset.append(offsets[change])
    state.last_offset = int(offsets[-1])


def _toggles(arr: np.ndarray, quotes: np.ndarray, start: int, delim: int, state: _ScanState) -> np.ndarray:
    """Positions of the quotes that open or close a quoted value, in order; updates ``state.in_quote``.

    Well-formed RFC 4180 text (every quoted value starts a field and ends before a delimiter or a line
    end) is decided by parity, vectorised. Anything else (a stray ``5"`` inside a field, text after a
    closing quote) walks the quotes one by one, as the parser does, from there to the end.
    """
    if not quotes.size:
        return quotes
    if not state.exact:
        opening = (np.arange(quotes.size) + state.in_quote) % 2 == 0
        prev = arr[np.maximum(quotes - 1, 0)]
        field_start = (quotes == start) | np.isin(prev, (delim, _LF, _CR, _QUOTE))
        field_end = np.isin(_byte_at(arr, quotes + 1), (delim, _LF, _CR, _QUOTE))
        if bool(np.all(np.where(opening, field_start, field_end))):
            state.in_quote = bool((state.in_quote + quotes.size) % 2)
            return quotes
        state.exact = True
        if not state.in_quote and quotes[0] > start and arr[quotes[0] - 1] == _QUOTE:
            # Parity closed on the first quote of an escaped pair the window boundary split: this second
            # quote reopens the value (as parity counts it), and the walk goes on inside it.
            state.in_quote = True
            return np.concatenate([quotes[:1], _walk_quotes(arr, quotes[1:], start, delim, state)])
    return _walk_quotes(arr, quotes, start, delim, state)


def _walk_quotes(
    arr: np.ndarray, quotes: np.ndarray, start: int, delim: int, state: _ScanState
) -> np.ndarray:
    """The parser's quote rules, quote by quote: outside a quoted value a quote opens one only at the start
    of a field (elsewhere it is a character); inside, ``""`` is a quote character and ``"`` closes."""
    toggles: list[int] = []
    n = len(arr)
    i = 0
    in_quote = state.in_quote
    while i < quotes.size:
        p = int(quotes[i])
        if not in_quote:
            if p == start or arr[p - 1] in (delim, _LF, _CR):
                in_quote = True
                toggles.append(p)
            i += 1
        elif p + 1 < n and arr[p + 1] == _QUOTE:
            if i + 1 == quotes.size:
                state.skip_quote = p + 1  # the pair's second quote opens the next window
            i += 2
        else:
            in_quote = False
            toggles.append(p)
            i += 1
    state.in_quote = in_quote
    return np.asarray(toggles, dtype=np.int64)
