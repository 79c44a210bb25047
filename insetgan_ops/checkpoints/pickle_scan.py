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

__all__ = ["MAX_STACK", "MAX_MARKS", "MAX_NESTING", "MAX_MEMO", "MAX_OPCODES", "MAX_LONG_BYTES", "scan"]

MAX_STACK = 100_000
MAX_MARKS = 1_000
MAX_NESTING = 100
MAX_MEMO = 1_000_000
MAX_OPCODES = 5_000_000
MAX_LONG_BYTES = 64

_REFUSED = {"EXT1", "EXT2", "EXT4", "INST", "OBJ", "PERSID", "NEXT_BUFFER", "READONLY_BUFFER"}
# Opcodes whose result is, or may be, a tuple holding what they pop (REDUCE and its kin call an
# allowed global that could return one): the result nests one level deeper than its deepest input.
_NESTING = {"TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "EMPTY_TUPLE", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "BUILD",
            "BINPERSID", "FROZENSET"}
_LENGTH_BYTES = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
                 pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}
# What an opcode does to the memo: store the top of the stack (at its argument, or at the next
# index for MEMOIZE) or push a stored entry.
_MEMO = {"PUT": "put", "BINPUT": "put", "LONG_BINPUT": "put", "MEMOIZE": "put",
         "GET": "get", "BINGET": "get", "LONG_BINGET": "get"}


def _table() -> dict[int, tuple]:
    """Per opcode byte: (name, fixed argument bytes or None, length-prefix bytes or None, lines of
    text argument, items popped (None: down to the last mark), items kept below that mark, items
    pushed, pushes a mark)."""
    table = {}
    for op in pickletools.opcodes:
        arg = op.arg
        fixed = arg.n if arg is not None and arg.n >= 0 else None
        prefix = _LENGTH_BYTES.get(arg.n) if arg is not None else None
        lines = 0
        if arg is not None and arg.n == pickletools.UP_TO_NEWLINE:
            lines = 2 if arg.name == "stringnl_noescape_pair" else 1
        before = [s.name for s in op.stack_before]
        pops = None if "mark" in before else len(before)
        below = before.index("mark") if "mark" in before else 0
        pushes = sum(1 for s in op.stack_after if s.name != "mark")
        table[op.code.encode("latin1")[0]] = (op.name, fixed, prefix, lines, pops, below, pushes,
                                              op.name == "MARK")
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
    end = len(view)
    pos, count = start, 0
    stack: list[int] = []        # per stack item: how deeply tuples nest inside it
    marks: list[int] = []        # stack heights at the open marks
    memo: dict[int, int] = {}    # memo index -> nesting of the stored item
    while pos < end:
        entry = _OPCODES.get(view[pos])
        if entry is None:
            _refuse(path, f"holds an unknown opcode {view[pos]:#04x} at byte {pos}")
        name, fixed, prefix, lines, pops, below, pushes, is_mark = entry
        pos += 1
        count += 1
        if count > MAX_OPCODES:
            _refuse(path, f"has more than {MAX_OPCODES:,} opcodes")
        if name == "PERSID" or (name == "BINPERSID" and not persistent_ids):
            _refuse(path, "uses persistent ids")
        if name in _REFUSED:
            _refuse(path, f"uses the {name} opcode")
        argument = 0
        if fixed is not None:
            if pos + fixed > end:
                break
            argument = int.from_bytes(view[pos:pos + fixed], "little")
            pos += fixed
        elif prefix is not None:
            if pos + prefix > end:
                break
            length = int.from_bytes(view[pos:pos + prefix], "little",
                                    signed=prefix == 4 and name in ("BINSTRING", "LONG4"))
            pos += prefix
            if length < 0 or length > end - pos:
                _refuse(path, f"claims {length:,} bytes at byte {pos} where {end - pos:,} are left")
            if name in ("LONG1", "LONG4") and length > MAX_LONG_BYTES:
                _refuse(path, f"holds an integer of {length:,} bytes")
            pos += length
        for _ in range(lines):
            newline = bytes(view[pos:min(end, pos + 4096)]).find(b"\n")
            if newline < 0:
                _refuse(path, f"holds a text argument longer than 4096 bytes at byte {pos}")
            if name == "LONG" and newline > 3 * MAX_LONG_BYTES:
                _refuse(path, f"holds an integer of {newline:,} digits")
            if name in ("PUT", "GET"):
                text = bytes(view[pos:pos + newline])
                if not text.isdigit():
                    _refuse(path, f"holds a malformed memo index at byte {pos}")
                argument = int(text)
            pos += newline + 1
        if name == "FRAME" and argument > end - pos:
            _refuse(path, f"claims a frame of {argument:,} bytes where {end - pos:,} are left")

        # The stack effect, with the nesting of what is built.
        if pops is None:
            if not marks:
                _refuse(path, f"closes a mark that was never opened (byte {pos})")
            cut = marks.pop() - below
        else:
            cut = len(stack) - pops
        if cut < 0:
            _refuse(path, f"pops more items than it pushed (byte {pos})")
        popped = stack[cut:]
        del stack[cut:]
        memo_op = _MEMO.get(name)
        if name == "DUP":
            stack.extend(popped * 2)
        elif memo_op == "put":
            stack.extend(popped)  # MEMOIZE pops its item and pushes it back; PUT leaves the stack alone
            if not stack:
                _refuse(path, f"memoizes from an empty stack (byte {pos})")
            index = len(memo) if name == "MEMOIZE" else argument
            if index >= MAX_MEMO or index > count:
                _refuse(path, f"uses memo index {index:,} after {count:,} opcodes")
            memo[index] = stack[-1]
        elif memo_op == "get":
            if argument not in memo:
                _refuse(path, f"reads memo index {argument:,}, which was never stored (byte {pos})")
            stack.append(memo[argument])
        elif pushes:
            nesting = 1 + max(popped, default=0) if name in _NESTING else 0
            if nesting > MAX_NESTING:
                _refuse(path, f"nests objects more than {MAX_NESTING} levels deep")
            stack.extend([nesting] * pushes)
        if is_mark:
            marks.append(len(stack))
        if len(stack) > MAX_STACK or len(marks) > MAX_MARKS:
            _refuse(path, f"holds more than {MAX_STACK:,} items or {MAX_MARKS:,} marks at once")
        if name == "STOP":
            return pos
    raise CheckpointError(path, "the pickle is truncated (the download may be incomplete); download it again")
