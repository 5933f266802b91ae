"""Just enough of ELF to judge a shared library before anything loads it.

``dlopen`` runs a library's constructors, so a file is read first: its class, byte order, machine and
type from the header, its section table (which must lie inside the file: a truncated copy fails here)
and its dynamic symbols, among which an openqnn model library exports ``openqnn_model_abi_version``.
"""

from __future__ import annotations

import platform
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MACHINES", "ElfError", "ElfInfo", "host_machine", "read_elf"]

# e_machine -> the name openqnn's targets and Python's platform.machine() use
MACHINES = {3: "x86", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
_PLATFORM = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64", "riscv64": "riscv64"}

_SHT_DYNSYM, _SHT_NOBITS, _ET_DYN = 11, 8, 3


class ElfError(ValueError):
    """The file is not a shared library this machine could judge (the message says why)."""


@dataclass(frozen=True)
class ElfInfo:
    machine: str  # "x86_64", "aarch64", ... or "e_machine N"
    bits: int
    shared: bool
    symbols: frozenset[str]  # defined dynamic symbols


def host_machine() -> str:
    m = platform.machine().lower()
    return _PLATFORM.get(m, m)


def read_elf(path: Path) -> ElfInfo:
    """The header facts and defined dynamic symbols of the ELF file ``path``; :class:`ElfError` when it is
    not one, is truncated, or its tables do not fit in it."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise ElfError(f"not an ELF shared library (it starts with {data[:4]!r})")
    if len(data) < 52:
        raise ElfError(f"truncated: {len(data)} bytes, shorter than an ELF header")
    cls, order = data[4], data[5]
    if cls not in (1, 2) or order not in (1, 2):
        raise ElfError(f"corrupt ELF header (class {cls}, byte order {order})")
    bits = 64 if cls == 2 else 32
    e = "<" if order == 1 else ">"
    if bits == 64:
        if len(data) < 64:
            raise ElfError(f"truncated: {len(data)} bytes, shorter than an ELF header")
        e_type, e_machine = struct.unpack_from(e + "HH", data, 16)
        shoff, = struct.unpack_from(e + "Q", data, 40)
        shentsize, shnum, _ = struct.unpack_from(e + "HHH", data, 58)
        sh_fmt, sh_size = e + "IIQQQQIIQQ", 64
    else:
        e_type, e_machine = struct.unpack_from(e + "HH", data, 16)
        shoff, = struct.unpack_from(e + "I", data, 32)
        shentsize, shnum, _ = struct.unpack_from(e + "HHH", data, 46)
        sh_fmt, sh_size = e + "IIIIIIIIII", 40
    machine = MACHINES.get(e_machine, f"e_machine {e_machine}")
    if shnum == 0 or shoff == 0:
        raise ElfError("it has no section table (stripped with sstrip, or not a linked library)")
    if shentsize != sh_size or shoff + shnum * shentsize > len(data):
        raise ElfError(f"truncated or corrupt: its section table ends at byte {shoff + shnum * shentsize}, "
                       f"the file has {len(data)}")
    sections = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize) for i in range(shnum)]
    for i, s in enumerate(sections):
        s_type, s_off, s_size = s[1], s[4], s[5]
        if s_type != _SHT_NOBITS and s_off + s_size > len(data):
            raise ElfError(f"truncated: section {i} ends at byte {s_off + s_size}, the file has {len(data)}")
    symbols: set[str] = set()
    for s in sections:
        if s[1] != _SHT_DYNSYM:
            continue
        _, _, _, _, off, size, link, _, _, entsize = s
        if link >= len(sections) or not entsize:
            raise ElfError("corrupt dynamic symbol table")
        str_off, str_size = sections[link][4], sections[link][5]
        strtab = data[str_off:str_off + str_size]
        for k in range(size // entsize):
            at = off + k * entsize
            if bits == 64:
                name, _info, _other, shndx = struct.unpack_from(e + "IBBH", data, at)
            else:
                name, _value, _size, _info, _other, shndx = struct.unpack_from(e + "IIIBBH", data, at)
            if shndx == 0 or name >= len(strtab):  # undefined (imported) or nameless
                continue
            end = strtab.find(b"\0", name)
            symbols.add(strtab[name:end if end >= 0 else len(strtab)].decode("utf-8", "replace"))
    return ElfInfo(machine, bits, e_type == _ET_DYN, frozenset(symbols))
