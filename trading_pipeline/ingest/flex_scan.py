"""One pass over a document written one element per line: layouts, values, census.

The Flex reader (:mod:`trading_pipeline.ingest.flex`) reads files whose every line holds
at most one tag with double-quoted attributes. Such a line is its *markup* (the text
between the values: ``<Trade accountId=``, `` currency=``, `` />``) and its values (the
text between a pair of quotes). Lines with identical markup share a *layout*; the reader
checks each layout once against XML's grammar. :func:`scan_lines` walks the bytes once:

* it matches every line, byte for byte, against the layouts known so far; a line that
  matches none is handed to the caller's ``layout_of`` (which checks the new markup or
  declines the document), and the walk resumes at that line with the new layout;
* it copies the values the caller wants into one compact text per element name: a row
  per element, ``<line number>"<value>"<value>...`` (a value never holds ``"`` or a line
  end, so both can separate), which polars' CSV reader turns into columns at once;
* it proves the rest of what the reader needs of the bytes: no value holds ``<`` or a
  control character XML forbids, and no carriage return stands alone (a line end to XML
  but not to the reader). Such a file is declined (:class:`ScanDeclined`): XML's own
  parser then decides. It notes the lines whose values hold ``&`` (references, to be
  checked and decoded) and whether any value holds a tab.

Every byte of a line belongs either to the markup of its layout or to a value, so a
document the walk accepts holds nothing but the checked layouts' markup and values.

The walk is a numba kernel (compiled once, cached on disk; numba is imported only when a
document is big enough for that to pay off). Small documents run the same function as
plain Python, so both paths share one definition.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Status codes of the kernel (state[STATUS]).
_DONE, _UNKNOWN_LINE, _OUTPUT_FULL, _DECLINE, _LINES_FULL = 0, 1, 2, 3, 4
# Slots of the kernel's state array.
_POSITION, _LINE, _STATUS, _PREVIOUS, _HAS_TAB, _DETAIL = range(6)

# Below this size plain Python walks the bytes faster than numba is imported and loaded.
NUMBA_THRESHOLD = 1 << 20

_QUOTE, _NEWLINE, _CR, _TAB, _LT, _AMP = 34, 10, 13, 9, 60, 38


class ScanDeclined(Exception):
    """The bytes are not of the shape the line reader vouches for; XML's parser decides."""


@dataclass(frozen=True)
class LineLayout:
    """What the caller's ``layout_of`` found in a line's markup.

    ``element`` names the output the layout's rows go to (None: no rows), ``attributes``
    the attribute names in the line's order.
    """

    element: str | None
    attributes: tuple[str, ...]


@dataclass
class ScanResult:
    """The walk's findings. ``layout_of_line[i]`` indexes the layouts in order of
    discovery; ``samples[k]`` are the fields (split at quotes) of layout k's first line;
    ``rows[name]`` is the compact text of that element's rows (see the module doc)."""

    line_count: int
    layout_of_line: np.ndarray
    samples: list[tuple[str, ...]]
    rows: dict[str, bytes]
    ampersand_lines: np.ndarray  # line indexes whose values hold "&"
    has_tab: bool
    padded: dict[str, set[str]]  # per element: wanted attributes with a blank or tab at a value's edge


def _walk(  # one function: numba compiles it whole, plain Python runs it as it is
    buf, seg_bytes, seg_off, layout_segs, layout_element, colmap, colmap_off, element_columns,
    column_base, out, out_pos, out_end, layout_of_line, ampersand, padded, spans, state,
):
    """Walk lines from state[_POSITION] (line state[_LINE]) until the end, a line no
    layout matches, a full output region, or a byte that declines the document.

    Layout k's markup segments are seg_off[layout_segs[k]] .. seg_off[layout_segs[k+1]]:
    the first markup field plus its opening quote, then each middle field between its
    two quotes, then the closing quote and the last field; a layout without attributes
    is one segment, the whole line. ``spans`` is scratch room for one line's value spans.
    ``padded[column_base[element] + j]`` is set when a value of the element's column j
    starts or ends with a blank or a tab.
    """
    n = len(buf)
    pos = state[_POSITION]
    line = state[_LINE]
    layouts = len(layout_element)
    previous = state[_PREVIOUS]
    while pos < n:
        if line == len(layout_of_line):
            state[_STATUS] = _LINES_FULL
            state[_POSITION] = pos
            state[_LINE] = line
            state[_PREVIOUS] = previous
            return
        matched = -1
        next_pos = 0
        line_amp = False
        for attempt in range(layouts + 1):
            # The previous line's layout first: statements repeat a layout line after line.
            if attempt == 0:
                layout = previous
                if layout < 0:
                    continue
            else:
                layout = attempt - 1
                if layout == previous:
                    continue
            first = layout_segs[layout]
            last = layout_segs[layout + 1] - 1
            p = pos
            ok = True
            amp = False
            for s in range(first, last + 1):
                a = seg_off[s]
                length = seg_off[s + 1] - a
                if p + length > n:
                    ok = False
                    break
                for t in range(length):
                    if buf[p + t] != seg_bytes[a + t]:
                        ok = False
                        break
                if not ok:
                    break
                p += length
                if s == last:
                    break
                # A value: up to the next quote. Bytes that no accepted document holds in a
                # value decline it whatever the layout (XML's parser reports them).
                q = p
                while q < n:
                    c = buf[q]
                    if c == _QUOTE:
                        break
                    if c < 32 or c == _LT or c == _AMP:
                        if c == _NEWLINE:
                            break
                        if c == _TAB:
                            state[_HAS_TAB] = 1
                        elif c == _AMP:
                            amp = True
                        elif c == _CR and q + 1 < n and buf[q + 1] == _NEWLINE:
                            break  # the line ends inside the tag: not this layout
                        else:
                            state[_STATUS] = _DECLINE
                            state[_DETAIL] = c
                            state[_POSITION] = pos
                            state[_LINE] = line
                            return
                    q += 1
                if q >= n or buf[q] != _QUOTE:
                    ok = False
                    break
                spans[2 * (s - first)] = p
                spans[2 * (s - first) + 1] = q
                p = q
            if not ok:
                continue
            # The markup must end the line (a CR before the LF belongs to the line end).
            if p == n:
                next_pos = n
            elif buf[p] == _NEWLINE:
                next_pos = p + 1
            elif buf[p] == _CR and p + 1 < n and buf[p + 1] == _NEWLINE:
                next_pos = p + 2
            else:
                continue
            matched = layout
            line_amp = amp
            break
        if matched < 0:
            state[_STATUS] = _UNKNOWN_LINE
            state[_POSITION] = pos
            state[_LINE] = line
            state[_PREVIOUS] = previous
            return
        element = layout_element[matched]
        if element >= 0:
            columns = element_columns[element]
            mapping = colmap_off[matched]
            need = 21 + columns
            for j in range(columns):
                i = colmap[mapping + j]
                if i >= 0:
                    need += spans[2 * i + 1] - spans[2 * i]
            w = out_pos[element]
            if w + need > out_end[element]:
                state[_STATUS] = _OUTPUT_FULL
                state[_DETAIL] = element
                state[_POSITION] = pos
                state[_LINE] = line
                state[_PREVIOUS] = matched
                return
            # The line number (1-based), in decimal.
            number = line + 1
            digits = 0
            probe = number
            while True:
                digits += 1
                probe //= 10
                if probe == 0:
                    break
            for d in range(digits - 1, -1, -1):
                out[w + d] = 48 + number % 10
                number //= 10
            w += digits
            for j in range(columns):
                out[w] = _QUOTE
                w += 1
                i = colmap[mapping + j]
                if i >= 0:
                    first_byte, end_byte = spans[2 * i], spans[2 * i + 1]
                    if end_byte > first_byte and (
                        buf[first_byte] == 32 or buf[first_byte] == _TAB
                        or buf[end_byte - 1] == 32 or buf[end_byte - 1] == _TAB
                    ):
                        padded[column_base[element] + j] = 1
                    for b in range(first_byte, end_byte):
                        out[w] = buf[b]
                        w += 1
            out[w] = _NEWLINE
            out_pos[element] = w + 1
        layout_of_line[line] = matched
        if line_amp:
            ampersand[line] = 1
        previous = matched
        line += 1
        pos = next_pos
    state[_STATUS] = _DONE
    state[_POSITION] = pos
    state[_LINE] = line
    state[_PREVIOUS] = previous


_compiled: list[Callable] = []
_compiling = threading.Lock()


def _jitted_walk() -> Callable:
    """The kernel compiled by numba (imported here: its import alone takes half a second;
    the compiled code is cached on disk, so only the first run ever compiles)."""
    with _compiling:
        if not _compiled:
            import numba

            _compiled.append(numba.njit(cache=True, nogil=True)(_walk))
        return _compiled[0]


def prepare_in_background(size: int) -> None:
    """For a document of ``size`` bytes that the kernel will walk: import numba and load
    the compiled kernel on another thread now, while the caller reads the file (reading
    releases the GIL, importing mostly holds it, so the two overlap)."""
    if size >= NUMBA_THRESHOLD and not _compiled:
        threading.Thread(target=_warm_up, name="flex-scan-warm-up", daemon=True).start()


def _warm_up() -> None:
    # A walk over a one-line document loads the kernel for the argument types of every walk.
    scan_lines(b"<a/>\n", {}, lambda _fields: LineLayout(None, ()), max_layouts=1, use_numba=True)


def _regions(sizes: list[int], use_numba: bool) -> tuple:
    """An output buffer of consecutive regions of ``sizes``: (buffer, starts, write
    positions, ends)."""
    starts = [0, *itertools.accumulate(sizes)][:-1]
    ends = [start + size for start, size in zip(starts, sizes, strict=True)]
    buffer = np.empty(sum(sizes), dtype=np.uint8) if use_numba else bytearray(sum(sizes))
    return buffer, starts, list(starts), ends


def scan_lines(
    data: bytes,
    wanted: Mapping[str, Sequence[str]],
    layout_of: Callable[[tuple[str, ...]], LineLayout],
    *,
    max_layouts: int,
    use_numba: bool | None = None,
) -> ScanResult:
    """Walk ``data`` once (see the module doc). ``wanted`` maps an element name to the
    attributes whose values its rows hold, in column order; ``layout_of`` checks the
    fields of a line no known layout matches (raising to decline the document).
    ``use_numba`` defaults to: for documents of at least :data:`NUMBA_THRESHOLD` bytes."""
    if use_numba is None:
        use_numba = len(data) >= NUMBA_THRESHOLD
    walk = _jitted_walk() if use_numba else _walk
    buf = np.frombuffer(data, dtype=np.uint8) if use_numba else data
    elements = list(wanted)
    element_columns = [len(wanted[name]) for name in elements]
    column_base = [0, *itertools.accumulate(element_columns)]
    padded = np.zeros(column_base[-1] + 1, dtype=np.uint8)

    # The layout table (see _walk), grown as new layouts turn up.
    seg_parts: list[bytes] = []
    seg_lengths: list[int] = []
    layout_segs = [0]
    layout_element: list[int] = []
    colmap: list[int] = []
    colmap_off: list[int] = []
    samples: list[tuple[str, ...]] = []
    max_values = 1

    # One output region per element; a full region is doubled and the walk resumes.
    # Rarely more than half the document: the size is reserved, not touched, until used.
    region_size = [len(data) // 2 + 4096] * len(elements)
    out, region_start, out_pos, out_end = _regions(region_size, use_numba)

    # Per line: its layout, and whether its values hold "&". Sized by the lines of the
    # first 64 KiB (counting all lines would cost a pass), grown when the walk needs it.
    head = data[:65536]
    expected_lines = int(len(data) * (head.count(b"\n") + 1) / max(len(head), 1) * 1.25) + 64
    layout_of_line = np.full(expected_lines, -1, dtype=np.int16)
    ampersand = np.zeros(expected_lines, dtype=np.uint8)
    state = [0] * 6
    state[_PREVIOUS] = -1
    tables: list | None = None
    spans: object = None
    last_unknown = -1
    while True:
        if tables is None:
            tables = [
                b"".join(seg_parts),
                [0, *itertools.accumulate(seg_lengths)],
                layout_segs,
                layout_element,
                colmap or [0],
                colmap_off or [0],
                element_columns,
                column_base,
            ]
            spans = [0] * (2 * max_values)
            if use_numba:
                tables = [np.frombuffer(tables[0] or b"\0", dtype=np.uint8),
                          *(np.array(t, dtype=np.int64) for t in tables[1:])]
                spans = np.zeros(2 * max_values, dtype=np.int64)
        if use_numba:
            kernel_state = np.array(state, dtype=np.int64)
            positions = (np.array(out_pos, dtype=np.int64), np.array(out_end, dtype=np.int64))
            walk(buf, *tables, out, *positions, layout_of_line, ampersand, padded, spans, kernel_state)
            state = kernel_state.tolist()
            out_pos = positions[0].tolist()
        else:
            walk(buf, *tables, out, out_pos, out_end, layout_of_line, ampersand, padded, spans, state)
        status = state[_STATUS]
        if status == _DONE:
            break
        if status == _DECLINE:
            raise ScanDeclined(f"character {state[_DETAIL]} in a value")
        if status == _LINES_FULL:
            more = len(layout_of_line)
            layout_of_line = np.concatenate([layout_of_line, np.full(more, -1, dtype=np.int16)])
            ampersand = np.concatenate([ampersand, np.zeros(more, dtype=np.uint8)])
            continue
        if status == _OUTPUT_FULL:
            full = state[_DETAIL]
            region_size[full] = 2 * region_size[full] + 65536
            used = [(region_start[e], out_pos[e]) for e in range(len(elements))]
            old = out
            out, region_start, out_pos, out_end = _regions(region_size, use_numba)
            for e, (start, end) in enumerate(used):
                out[region_start[e] : region_start[e] + end - start] = old[start:end]
                out_pos[e] = region_start[e] + end - start
            continue
        # A line no known layout matches: its markup is checked and becomes a layout.
        line = state[_LINE]
        if line == last_unknown:  # pragma: no cover - a new layout always matches its own line
            raise ScanDeclined("a line does not match its own layout")
        last_unknown = line
        if len(samples) == max_layouts:
            raise ScanDeclined("too many line layouts")
        start = state[_POSITION]
        end = data.find(b"\n", start)
        text = data[start : len(data) if end < 0 else end]
        if text.endswith(b"\r"):
            text = text[:-1]
        if b"\r" in text or any(byte < 32 and byte != 9 for byte in text):
            raise ScanDeclined("a control character or a lone carriage return")
        fields = tuple(text.decode("utf-8").split('"'))
        layout = layout_of(fields)
        markup = [field.encode("utf-8") for field in fields[0::2]]
        if len(markup) != len(layout.attributes) + 1:  # pragma: no cover - layout_of's duty
            raise ScanDeclined("layout does not fit its line")
        if len(markup) == 1:
            segments = markup
        else:
            segments = [markup[0] + b'"', *(b'"' + m + b'"' for m in markup[1:-1]), b'"' + markup[-1]]
        seg_parts += segments
        seg_lengths += [len(segment) for segment in segments]
        layout_segs.append(layout_segs[-1] + len(segments))
        colmap_off.append(len(colmap))
        if layout.element is not None and layout.element in wanted:
            layout_element.append(elements.index(layout.element))
            position = {attribute: i for i, attribute in enumerate(layout.attributes)}
            colmap += [position.get(attribute, -1) for attribute in wanted[layout.element]]
        else:
            layout_element.append(-1)
        max_values = max(max_values, len(layout.attributes))
        samples.append(fields)
        state[_PREVIOUS] = len(samples) - 1  # the new layout is tried first
        tables = None

    line_count = state[_LINE]
    rows = {name: bytes(out[region_start[e] : out_pos[e]]) for e, name in enumerate(elements)}
    return ScanResult(
        line_count=line_count,
        layout_of_line=layout_of_line[:line_count],
        samples=samples,
        rows=rows,
        ampersand_lines=np.flatnonzero(ampersand[:line_count]),
        has_tab=bool(state[_HAS_TAB]),
        padded={
            name: {attribute for j, attribute in enumerate(wanted[name]) if padded[column_base[e] + j]}
            for e, name in enumerate(elements)
        },
    )
