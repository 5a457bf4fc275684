"""Text read as bytes and handed to the CSV parser as UTF-8: Windows-1252 ("Latin-1") windows decoded whole
when no line of them can be UTF-8, line by line otherwise, with the same bytes out either way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rentlake import textscan

FRENCH = "loyer;surface;quartier\n900;20,5;Opéra\n950;21;Gobelins\n1200;30;Bréguet-Sabin\n"


def line_by_line(raw: bytes) -> tuple[bytes, int]:
    """What the stream made of a window that is not UTF-8 before windows were decoded whole."""
    lines = raw.split(b"\n")
    latin = 0
    for i, line in enumerate(lines):
        text, how = textscan.decode_line(line)
        if how == "latin-1":
            latin += 1
            lines[i] = text.encode("utf-8")
    return b"\n".join(lines), latin


def read_all(stream: textscan.Utf8Stream) -> bytes:
    out = bytearray()
    while chunk := stream.read(1 << 16):
        out += chunk
    return bytes(out)


def test_a_latin1_file_is_decoded_whole_and_its_accented_lines_counted() -> None:
    # GIVEN a French export written in Windows-1252, with a euro sign and two accented lines
    data = (FRENCH + "1000;25;Saint-Éloi €\n").encode("cp1252")
    # WHEN streamed as UTF-8
    stream = textscan.Utf8Stream(data)
    out = read_all(stream)
    # THEN the text is the same, now in UTF-8, and the three accented lines are counted as Latin-1
    assert out.decode("utf-8") == FRENCH + "1000;25;Saint-Éloi €\n"
    assert not textscan.may_hold_utf8(data)
    assert (stream.latin_lines, stream.utf8_parts, stream.encoding) == (3, 0, "latin-1")


def test_a_window_mixing_utf8_and_latin1_lines_keeps_each_line_as_it_was_written() -> None:
    # GIVEN a UTF-8 line then a Latin-1 line in one window
    data = "900;20;Opéra\n".encode() + "950;21;Gobelins é\n".encode("latin-1")
    # WHEN streamed as UTF-8
    stream = textscan.Utf8Stream(data)
    out = read_all(stream)
    # THEN both read as written, and the file is reported as mixed
    assert out.decode("utf-8") == "900;20;Opéra\n950;21;Gobelins é\n"
    assert textscan.may_hold_utf8(data)
    assert (stream.latin_lines, stream.encoding) == (1, "mixed utf-8/latin-1")


@pytest.mark.parametrize(
    ("data", "lines"),
    [(b"", 0), (b"plain\nascii\n", 0), (b"\xe9", 1), (b"a\xe9\nb\nc\xe9\xe8\n\xe0", 3), (b"\n\n\xe9\n", 1)],
)
def test_lines_with_high_bytes_counts_each_line_once(data: bytes, lines: int) -> None:
    assert textscan.lines_with_high_bytes(data) == lines


# Latin-1 words, words that are also UTF-8 once encoded ("Ã©" is é's UTF-8), and bytes no code defines.
_PIECES = ["Opéra", "très", "11e", "ça", "œuvre", "€", "Ã©", "plain", "30,5", "\r", " ", ";"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from(_PIECES), max_size=6), max_size=12),
    st.binary(max_size=4),
    st.sampled_from([b"", b"\n", b"\r\n"]),
)
def test_a_window_gives_the_bytes_its_lines_would_give_one_by_one(
    lines: list[list[str]], noise: bytes, end: bytes
) -> None:
    # GIVEN any window of Windows-1252 lines (some of which may read as UTF-8), stray bytes, an ending
    raw = b"\n".join("".join(words).encode("cp1252") for words in lines) + noise + end
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return  # a UTF-8 window passes as it is: nothing to transcode
    # WHEN the stream transcodes it
    stream = textscan.Utf8Stream(b"")
    out = stream._transcode(raw)
    # THEN the bytes out and the Latin-1 lines counted are the line-by-line ones
    assert (out, stream.latin_lines) == line_by_line(raw)
