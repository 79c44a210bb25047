"""A pre-scan of every pickle stream before it is unpickled: bounded size, nesting, memo and opcodes.

The restricted unpicklers decide which objects a file may name; this scan decides how big and how
deep the stream may be, so that no allowed construction can crash or exhaust the process: a tuple
nested a million deep (hashing it as a dict key overflows the C stack and kills the interpreter),
a memo index that makes the unpickler allocate gigabytes, a length that claims more bytes than
the file holds, a huge integer. It walks the opcodes without building anything, skipping payloads
by their length prefixes, and raises :class:`~.common.CheckpointError` at the first thing that no
generator file needs:

==========================  ======================================================================
stack                       at most :data:`MAX_STACK` items and :data:`MAX_MARKS` open marks
tuple nesting               at most :data:`MAX_NESTING` levels of tuples (or of objects built from
                            tuples) inside each other; lists and dicts end a chain, because the C
                            code that recurses without a limit (hashing) stops at them
tuple size                  a tuple expands to at most :data:`MAX_EXPANDED` tuples when the parts it
                            shares through the memo are counted as often as they appear (a
                            ``(t, t)`` chain 99 deep is 2^99 tuples to hash: an endless freeze)
marks                       as in CPython's unpickler, nothing reaches below the last open mark
                            and a ``POP`` right after a ``MARK`` removes the mark
memo                        indices below :data:`MAX_MEMO` and never above the number of opcodes
                            read so far (NVIDIA's and torch's picklers number them 0, 1, 2 ...)
opcodes                     at most :data:`MAX_OPCODES`; no ``EXT*``, ``INST``, ``OBJ``, text
                            ``PERSID`` or out-of-band buffers; ``BINPERSID`` only where the caller
                            allows it (the ``data.pkl`` of a ``torch.save`` file)
lengths                     every string, bytes and frame length within the bytes left in the file
integers                    ``LONG`` / ``LONG1`` / ``LONG4`` of at most :data:`MAX_LONG_BYTES` bytes
==========================  ======================================================================

A 1024x1024 NVIDIA generator pickle has about 10^5 opcodes and nests a dozen levels deep; the
scan of it takes a small fraction of its load (``bench/bench_checkpoint_loading.py``).
Every unpickling in the pack goes through :func:`scan` first (:mod:`.unpickling`).
"""

from __future__ import annotations

import pickletools
from typing import Union

from .common import CheckpointError

__all__ = ["MAX_STACK", "MAX_MARKS", "MAX_NESTING", "MAX_EXPANDED", "MAX_MEMO", "MAX_OPCODES", "MAX_LONG_BYTES",
           "scan"]

MAX_STACK = 100_000
MAX_MARKS = 1_000
MAX_NESTING = 100
MAX_MEMO = 1_000_000
MAX_OPCODES = 5_000_000
MAX_LONG_BYTES = 64
MAX_EXPANDED = 1_000_000

# Each stack item is tracked as one int: how deeply tuples nest in it (high bits) and how many
# tuples it expands to when shared parts are counted every time they appear (low bits; what hashing
# it costs). Anything not built by a nesting opcode counts as a leaf: 0 deep, size 1.
_SIZE_BITS = 50
_SIZE_MASK = (1 << _SIZE_BITS) - 1
_LEAF = 1
_EMPTY_TUPLE = (1 << _SIZE_BITS) + 1

_REFUSED = {"EXT1", "EXT2", "EXT4", "INST", "OBJ", "NEXT_BUFFER", "READONLY_BUFFER"}
# Opcodes whose result is, or may be, a tuple holding what they pop (REDUCE and its kin call an
# allowed global that could return one): the result nests one level deeper than its deepest input.
_NESTING = {"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD",
            "FROZENSET"}
_LENGTH_BYTES = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
                 pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
_SIGNED_LENGTH = {"BINSTRING", "LONG4"}
# What the scan does beyond skipping an opcode's argument and applying its stack effect.
(_PLAIN, _NESTS, _MARK, _DUP, _PUT, _GET, _STOP, _POP, _REFUSE, _PERSISTENT, _FRAME, _TEXT_PERSISTENT,
 _LONG) = range(13)
_KINDS = {"MARK": _MARK, "DUP": _DUP, "STOP": _STOP, "POP": _POP, "BINPERSID": _PERSISTENT, "PERSID": _TEXT_PERSISTENT,
          "FRAME": _FRAME, "LONG": _LONG, "LONG1": _LONG, "LONG4": _LONG,
          **dict.fromkeys(("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"), _PUT),
          **dict.fromkeys(("GET", "BINGET", "LONG_BINGET"), _GET),
          **dict.fromkeys(_NESTING, _NESTS), **dict.fromkeys(_REFUSED, _REFUSE)}


def _table() -> list:
    """Per opcode byte (None where there is no opcode): (name, what the scan does (``_KINDS``),
    fixed argument bytes, length-prefix bytes, lines of text argument, items popped (-1: down to
    the last mark), items kept below that mark, items pushed)."""
    table: list = [None] * 256
    for op in pickletools.opcodes:
        arg = op.arg
        fixed = arg.n if arg is not None and arg.n >= 0 else 0
        prefix = _LENGTH_BYTES.get(arg.n, 0) if arg is not None else 0
        lines = 0
        if arg is not None and arg.n == pickletools.UP_TO_NEWLINE:
            lines = 2 if arg.name == "stringnl_noescape_pair" else 1
        before = [s.name for s in op.stack_before]
        pops = -1 if "mark" in before else len(before)
        below = before.index("mark") if "mark" in before else 0
        pushes = sum(1 for s in op.stack_after if s.name != "mark")
        table[ord(op.code)] = (op.name, _KINDS.get(op.name, _PLAIN), fixed, prefix, lines, pops, below, pushes)
    return table


_OPCODES = _table()


def _refuse(path, problem: str) -> None:
    raise CheckpointError(path, f"refusing to load: the pickle {problem}, which no generator file does (the "
                                "file may be damaged or malicious)")


def scan(data: Union[bytes, bytearray, memoryview], path, start: int = 0, *, persistent_ids: bool = False) -> int:
    """Checks the pickle stream that starts at ``data[start]``; returns the offset just after its STOP.

    ``data`` may be a ``bytes``, ``bytearray``, ``mmap`` or ``memoryview``; ``path`` names the file
    in errors. Raises :class:`~.common.CheckpointError` for anything the module doc lists, and for
    a stream that ends without STOP (a truncated download).
    """
    # Released on every exit: a view still exported from a mapped file would keep it from closing.
    with memoryview(data) as outer, outer.cast("B") as view:
        return _scan(view, path, start, persistent_ids)


def _scan(view: memoryview, path, start: int, persistent_ids: bool) -> int:
    # One pass, one opcode at a time; written for speed (a 1024 generator pickle has ~10^5 opcodes).
    end = len(view)
    table = _OPCODES
    pos, count = start, 0
    stack: list[int] = []        # per stack item: nesting << _SIZE_BITS | expanded size (module doc)
    marks: list[int] = []        # stack heights at the open marks
    memo: dict[int, int] = {}    # memo index -> the stored item's entry
    while pos < end:
        entry = table[view[pos]]
        if entry is None:
            _refuse(path, f"holds an unknown opcode {view[pos]:#04x} at byte {pos}")
        name, kind, fixed, prefix, lines, pops, below, pushes = entry
        pos += 1
        count += 1
        if count > MAX_OPCODES:
            _refuse(path, f"has more than {MAX_OPCODES:,} opcodes")
        if kind >= _REFUSE:
            if kind == _REFUSE:
                _refuse(path, f"uses the {name} opcode")
            if kind == _TEXT_PERSISTENT or (kind == _PERSISTENT and not persistent_ids):
                _refuse(path, "uses persistent ids")
        argument = 0
        if fixed:
            if pos + fixed > end:
                break
            if kind == _PUT or kind == _GET or kind == _FRAME:
                argument = view[pos] if fixed == 1 else int.from_bytes(view[pos:pos + fixed], "little")
                if kind == _FRAME and argument > end - pos - fixed:
                    _refuse(path, f"claims a frame of {argument:,} bytes where {end - pos - fixed:,} are left")
            pos += fixed
        elif prefix:
            if pos + prefix > end:
                break
            length = int.from_bytes(view[pos:pos + prefix], "little", signed=prefix == 4 and name in _SIGNED_LENGTH)
            pos += prefix
            if length < 0 or length > end - pos:
                _refuse(path, f"claims {length:,} bytes at byte {pos} where {end - pos:,} are left")
            if kind == _LONG and length > MAX_LONG_BYTES:
                _refuse(path, f"holds an integer of {length:,} bytes")
            pos += length
        elif lines:
            for _ in range(lines):
                newline = _find_newline(view, pos, min(end, pos + 4096))
                if newline < 0:
                    _refuse(path, f"holds a text argument longer than 4096 bytes at byte {pos}")
                if kind == _LONG and newline - pos > 3 * MAX_LONG_BYTES:
                    _refuse(path, f"holds an integer of {newline - pos:,} digits")
                if kind == _PUT or kind == _GET:
                    text = bytes(view[pos:newline])
                    if not text.isdigit():
                        _refuse(path, f"holds a malformed memo index at byte {pos}")
                    argument = int(text)
                pos = newline + 1

        # The stack effect, with the nesting and size of what is built. Like CPython's unpickler, no
        # opcode but a mark-closing one may reach below the last open mark, and a POP right after a
        # MARK removes the mark.
        if not pops:  # the common cases: a value, an empty tuple or a memo entry pushed
            if kind == _PLAIN or kind == _LONG:
                if pushes:
                    stack.append(_LEAF)
            elif kind == _NESTS:
                stack.append(_EMPTY_TUPLE)
            elif kind == _GET:
                if argument not in memo:
                    _refuse(path, f"reads memo index {argument:,}, which was never stored (byte {pos})")
                stack.append(memo[argument])
            elif kind == _FRAME:
                continue
            if kind != _PUT and kind != _MARK:  # those two are handled below
                if len(stack) > MAX_STACK:
                    _refuse(path, f"holds more than {MAX_STACK:,} items at once")
                continue
        else:
            if pops < 0:
                if not marks:
                    _refuse(path, f"closes a mark that was never opened (byte {pos})")
                cut = marks.pop() - below
            elif kind == _POP and marks and marks[-1] == len(stack):
                marks.pop()
                continue
            else:
                cut = len(stack) - pops
            if cut < (marks[-1] if marks else 0):
                _refuse(path, f"pops more items than it pushed (byte {pos})")
        if kind == _PLAIN or kind == _POP:
            del stack[cut:]
            if pushes:
                stack.append(_LEAF)
        elif kind == _NESTS or kind == _PERSISTENT:
            parts = stack[cut:]
            built = ((1 + (max(parts, default=0) >> _SIZE_BITS)) << _SIZE_BITS) + 1 + (sum(parts) & _SIZE_MASK)
            if built >> _SIZE_BITS > MAX_NESTING:
                _refuse(path, f"nests objects more than {MAX_NESTING} levels deep")
            if built & _SIZE_MASK > MAX_EXPANDED:
                _refuse(path, f"builds a tuple of more than {MAX_EXPANDED:,} tuples once its shared parts are "
                              "counted as often as they appear")
            del stack[cut:]
            stack.append(built)
        elif kind == _MARK:
            marks.append(len(stack))
            if len(marks) > MAX_MARKS:
                _refuse(path, f"holds more than {MAX_MARKS:,} open marks")
        elif kind == _PUT:  # MEMOIZE pops its item and pushes it back; PUT leaves the stack alone
            if len(stack) <= (marks[-1] if marks else 0):
                _refuse(path, f"memoizes from an empty stack (byte {pos})")
            index = len(memo) if name == "MEMOIZE" else argument
            if index >= MAX_MEMO or index > count:
                _refuse(path, f"uses memo index {index:,} after {count:,} opcodes")
            memo[index] = stack[-1]
        elif kind == _DUP:
            stack.append(stack[-1])
        else:  # STOP
            return pos
        if len(stack) > MAX_STACK:
            _refuse(path, f"holds more than {MAX_STACK:,} items at once")
    raise CheckpointError(path, "the pickle is truncated (the download may be incomplete); download it again")


def _find_newline(view: memoryview, start: int, stop: int) -> int:
    """The offset of the first ``\\n`` in ``view[start:stop]``, or -1."""
    found = bytes(view[start:stop]).find(b"\n")
    return found if found < 0 else start + found
