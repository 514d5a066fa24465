#!/usr/bin/env python3
"""Render the seven AO ABI probe modules (WAT) and their message logs.

One template, seven module formats. Each generated module imports exactly the
host functions (names and wasm signatures) that a real module of its format
imports, exports what the matching `@permaweb/ao-loader@0.0.49` glue calls, and
implements a small command interpreter in `handle(msg, env)` (see README.md).

Usage:  python3 tests/modules/wat/gen.py          # rewrite *.wat and messages/
        python3 tests/modules/wat/gen.py --check  # fail if anything is stale

Python 3.11 standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# --------------------------------------------------------------------------
# Memory layout (identical for every format; addresses are byte offsets).
# --------------------------------------------------------------------------
DATA_BASE = 0x400  # static strings
STATE = 0x1000  # module state that must survive snapshot/restore
SCRATCH = 0x3000  # per-call scratch buffers (tm structs, iovecs, ...)
STACK_END = 0x10000  # lowest stack address (stack cookie lives here)
STACK_SIZE = 0x100000  # 1 MiB shadow stack
STACK_BASE = STACK_END + STACK_SIZE  # initial __stack_pointer
HEAP_BASE = STACK_BASE  # bump allocator starts right above the stack

ST_COUNTER = STATE + 0  # i32: `count` counter
ST_CTORS = STATE + 4  # i32: times __wasm_call_ctors ran
ST_MAIN = STATE + 8  # i32: times main ran
ST_ARGC = STATE + 12  # i32: argc seen by main
ST_ERRNO = STATE + 16  # i32: errno (address returned by __errno_location)
ST_STACK_INIT = STATE + 20  # i32: times emscripten_stack_init ran
ST_HEAP_TOP = STATE + 24  # ptr: allocator break
ST_LAST_OUT = STATE + 32  # ptr: previous handle() result, freed on next call
ST_THREW = STATE + 40  # ptr: __THREW__ (set through the setThrew export)
ST_THREW_VALUE = STATE + 48  # i32: __threwValue
ST_LJ_MARK1 = STATE + 52  # i32: longjmp probe markers
ST_LJ_MARK2 = STATE + 56  # i32
ST_LOOPS = STATE + 60  # i32: iterations done by `loop`
ST_STDOUT_LEN = STATE + 64  # i32: bytes buffered for stdout (the FILE* is STATE+64)
ST_FLUSH_RC = STATE + 68  # i32: fd_write result of the last flush
ST_FLUSH_N = STATE + 72  # i32: nwritten of the last flush
ST_DEPTH = STATE + 76  # i32: deepest `recurse` frame reached
ST_ARGV0 = STATE + 0x100  # 256 bytes: copy of argv[0]
ST_STDOUT_BUF = STATE + 0x200  # 256 bytes: stdout buffer
STDOUT_FILE = ST_STDOUT_LEN  # the address we hand out as `FILE *stdout`
STDOUT_CAP = 256

SCR_TM1 = SCRATCH + 0x000  # struct tm (64 bytes, 8-aligned)
SCR_TM2 = SCRATCH + 0x040
SCR_TM3 = SCRATCH + 0x080
SCR_TIME = SCRATCH + 0x0C0  # time_t
SCR_TZ_TIMEZONE = SCRATCH + 0x0D0  # long timezone
SCR_TZ_DAYLIGHT = SCRATCH + 0x0D8  # int daylight
SCR_TZ_NAMES = SCRATCH + 0x0E0  # char *tzname[2] (formats 1/2)
SCR_TZ_STD = SCRATCH + 0x100  # char std_name[32] (formats 3/4/wasm64)
SCR_TZ_DST = SCRATCH + 0x120  # char dst_name[32]
SCR_STRF = SCRATCH + 0x140  # strftime output (128 bytes)
SCR_IOV = SCRATCH + 0x1C0  # iovec (up to 32 bytes)
SCR_NUM = SCRATCH + 0x1E0  # size_t out-parameter
SCR_MODE = SCRATCH + 0x1F0  # openat varargs: mode_t
SCR_SEEK = SCRATCH + 0x1F8  # off_t out-parameter of fd_seek
SCR_READBUF = SCRATCH + 0x200  # 128 bytes
SCR_ENVC = SCRATCH + 0x280  # size_t environ count
SCR_ENVS = SCRATCH + 0x288  # size_t environ buffer size
SCR_NUMFMT = SCRATCH + 0x300  # 32 bytes for decimal formatting
SCR_AFTER = SCRATCH + 0x400

HANDLE_GAS = 1000  # usegas() at every handle() entry (formats 1/2/3)
LOOP_GAS = 100  # usegas() per `loop` iteration (formats 1/2/3)
RECURSE_GAS = 10  # usegas() per `recurse` frame (formats 1/2/3)
TZ_TIME = 1700000000  # 2023-11-14T22:13:20Z
BOMB_STEP = 0x100000
OOB_ADDR32 = 0xFFFFFFF0
OOB_ADDR64 = 0x10000000000  # 1 TiB
ASYNC_SAVE = 32  # bytes the weavedrive call site saves in the asyncify buffer


# --------------------------------------------------------------------------
# Import tables, read off real modules (ao-imports.md) or derived from the glue.
# (internal name, wasm module, field, params, results)
# --------------------------------------------------------------------------
def _imp(name: str, mod: str, field_: str, params: str, results: str = ""):
    return (name, mod, field_, params.split(), results.split())


E, W = "env", "wasi_snapshot_preview1"

# wasm32-unknown-emscripten: minified module `a`, mapping verified against the
# glue's asmLibraryArg (the same 31 imports every fixture of this format has).
IMPORTS_EM1 = [
    _imp("date_now", "a", "a", "", "f64"),  # _emscripten_date_now
    _imp("set_tempret", "a", "b", "i32"),  # setTempRet0
    _imp("fd_close", "a", "c", "i32", "i32"),
    _imp("fcntl64", "a", "d", "i32 i32 i32", "i32"),
    _imp("unlinkat", "a", "e", "i32 i32 i32", "i32"),
    _imp("fd_write", "a", "f", "i32 i32 i32 i32", "i32"),
    _imp("openat", "a", "g", "i32 i32 i32 i32", "i32"),
    _imp("get_tempret", "a", "h", "", "i32"),  # getTempRet0
    _imp("mktime", "a", "i", "i32", "i32"),
    _imp("tzset", "a", "j", "i32 i32 i32"),
    _imp("memcpy_big", "a", "k", "i32 i32 i32"),  # emscripten_memcpy_big
    _imp("exit", "a", "l", "i32"),
    _imp("system", "a", "m", "i32", "i32"),
    _imp("strftime", "a", "n", "i32 i32 i32 i32", "i32"),
    _imp("fd_seek", "a", "o", "i32 i32 i32 i32 i32", "i32"),
    _imp("throw_longjmp", "a", "p", ""),  # _emscripten_throw_longjmp
    _imp("resize_heap", "a", "q", "i32", "i32"),
    _imp("lstat64", "a", "r", "i32 i32", "i32"),
    _imp("renameat", "a", "s", "i32 i32 i32 i32", "i32"),
    _imp("rmdir", "a", "t", "i32", "i32"),
    _imp("environ_get", "a", "u", "i32 i32", "i32"),
    _imp("environ_sizes_get", "a", "v", "i32 i32", "i32"),
    _imp("dup3", "a", "w", "i32 i32 i32", "i32"),
    _imp("invoke", "a", "x", "i32 i32 i32"),  # invoke_vii
    _imp("fd_read", "a", "y", "i32 i32 i32 i32", "i32"),
    _imp("ioctl", "a", "z", "i32 i32 i32", "i32"),
    _imp("now_monotonic", "a", "A", "", "i32"),
    _imp("gmtime", "a", "B", "i32 i32"),
    _imp("localtime", "a", "C", "i32 i32"),
    _imp("abort", "a", "D", ""),
    _imp("usegas", "metering", "usegas", "i32"),
]

# wasm32-unknown-emscripten2: the plain (Lua) fixture's 32 imports.
IMPORTS_EM2 = [
    _imp("abort", E, "abort", ""),
    _imp("get_tempret", E, "getTempRet0", "", "i32"),
    _imp("invoke", E, "invoke_vii", "i32 i32 i32"),
    _imp("set_tempret", E, "setTempRet0", "i32"),
    _imp("strftime", E, "strftime", "i32 i32 i32 i32", "i32"),
    _imp("system", E, "system", "i32", "i32"),
    _imp("exit", E, "exit", "i32"),
    _imp("memcpy_big", E, "emscripten_memcpy_big", "i32 i32 i32"),
    _imp("tzset", E, "_tzset_js", "i32 i32 i32"),
    _imp("mktime", E, "_mktime_js", "i32", "i32"),
    _imp("localtime", E, "_localtime_js", "i32 i32"),
    _imp("gmtime", E, "_gmtime_js", "i32 i32"),
    _imp("date_now", E, "_emscripten_date_now", "", "f64"),
    _imp("now_monotonic", E, "_emscripten_get_now_is_monotonic", "", "i32"),
    _imp("get_now", E, "emscripten_get_now", "", "f64"),
    _imp("openat", E, "__syscall_openat", "i32 i32 i32 i32", "i32"),
    _imp("fcntl64", E, "__syscall_fcntl64", "i32 i32 i32", "i32"),
    _imp("ioctl", E, "__syscall_ioctl", "i32 i32 i32", "i32"),
    _imp("fd_write", W, "fd_write", "i32 i32 i32 i32", "i32"),
    _imp("fd_read", W, "fd_read", "i32 i32 i32 i32", "i32"),
    _imp("fd_close", W, "fd_close", "i32", "i32"),
    _imp("dup3", E, "__syscall_dup3", "i32 i32 i32", "i32"),
    _imp("environ_sizes_get", W, "environ_sizes_get", "i32 i32", "i32"),
    _imp("environ_get", W, "environ_get", "i32 i32", "i32"),
    _imp("unlinkat", E, "__syscall_unlinkat", "i32 i32 i32", "i32"),
    _imp("rmdir", E, "__syscall_rmdir", "i32", "i32"),
    _imp("renameat", E, "__syscall_renameat", "i32 i32 i32 i32", "i32"),
    _imp("lstat64", E, "__syscall_lstat64", "i32 i32", "i32"),
    _imp("resize_heap", E, "emscripten_resize_heap", "i32", "i32"),
    _imp("throw_longjmp", E, "_emscripten_throw_longjmp", ""),
    _imp("fd_seek", W, "fd_seek", "i32 i32 i32 i32 i32", "i32"),
    _imp("usegas", "metering", "usegas", "i32"),
]

# wasm32-unknown-emscripten3: no fixture exists; the emscripten2 set renamed and
# re-typed to what emscripten3.cjs provides (no get/setTempRet0 imports, 64-bit
# time_t split into lo/hi i32 pairs, 4-argument _tzset_js, _emscripten_system,
# emscripten_date_now, emscripten_memcpy_js).
IMPORTS_EM3 = [
    _imp("abort", E, "abort", ""),
    _imp("invoke", E, "invoke_vii", "i32 i32 i32"),
    _imp("strftime", E, "strftime", "i32 i32 i32 i32", "i32"),
    _imp("system", E, "_emscripten_system", "i32", "i32"),
    _imp("exit", E, "exit", "i32"),
    _imp("memcpy_big", E, "emscripten_memcpy_js", "i32 i32 i32"),
    _imp("tzset", E, "_tzset_js", "i32 i32 i32 i32"),
    _imp("mktime", E, "_mktime_js", "i32", "i32"),
    _imp("localtime", E, "_localtime_js", "i32 i32 i32"),
    _imp("gmtime", E, "_gmtime_js", "i32 i32 i32"),
    _imp("date_now", E, "emscripten_date_now", "", "f64"),
    _imp("now_monotonic", E, "_emscripten_get_now_is_monotonic", "", "i32"),
    _imp("get_now", E, "emscripten_get_now", "", "f64"),
    _imp("openat", E, "__syscall_openat", "i32 i32 i32 i32", "i32"),
    _imp("fcntl64", E, "__syscall_fcntl64", "i32 i32 i32", "i32"),
    _imp("ioctl", E, "__syscall_ioctl", "i32 i32 i32", "i32"),
    _imp("fd_write", W, "fd_write", "i32 i32 i32 i32", "i32"),
    _imp("fd_read", W, "fd_read", "i32 i32 i32 i32", "i32"),
    _imp("fd_close", W, "fd_close", "i32", "i32"),
    _imp("dup3", E, "__syscall_dup3", "i32 i32 i32", "i32"),
    _imp("environ_sizes_get", W, "environ_sizes_get", "i32 i32", "i32"),
    _imp("environ_get", W, "environ_get", "i32 i32", "i32"),
    _imp("unlinkat", E, "__syscall_unlinkat", "i32 i32 i32", "i32"),
    _imp("rmdir", E, "__syscall_rmdir", "i32", "i32"),
    _imp("renameat", E, "__syscall_renameat", "i32 i32 i32 i32", "i32"),
    _imp("lstat64", E, "__syscall_lstat64", "i32 i32", "i32"),
    _imp("resize_heap", E, "emscripten_resize_heap", "i32", "i32"),
    _imp("throw_longjmp", E, "_emscripten_throw_longjmp", ""),
    _imp("fd_seek", W, "fd_seek", "i32 i32 i32 i32 i32", "i32"),
    _imp("usegas", "metering", "usegas", "i32"),
]

# wasm32-unknown-emscripten4 (aos 2.0.0 set) + emscripten_get_now (provided by
# the glue; imported by the aos sqlite build of the same toolchain).
IMPORTS_EM4 = [
    _imp("invoke", E, "invoke_vii", "i32 i32 i32"),
    _imp("strftime", E, "strftime", "i32 i32 i32 i32", "i32"),
    _imp("exit", E, "exit", "i32"),
    _imp("wd_open", E, "__asyncjs__weavedrive_open", "i32 i32", "i32"),
    _imp("wd_read", E, "__asyncjs__weavedrive_read", "i32 i32 i32", "i32"),
    _imp("wd_close", E, "__asyncjs__weavedrive_close", "i32", "i32"),
    _imp("gas_used", E, "metering_gasUsed", "", "i32"),
    _imp("fcntl64", E, "__syscall_fcntl64", "i32 i32 i32", "i32"),
    _imp("ioctl", E, "__syscall_ioctl", "i32 i32 i32", "i32"),
    _imp("fd_close", W, "fd_close", "i32", "i32"),
    _imp("fd_read", W, "fd_read", "i32 i32 i32 i32", "i32"),
    _imp("fd_write", W, "fd_write", "i32 i32 i32 i32", "i32"),
    _imp("abort", E, "_abort_js", ""),
    _imp("memcpy_big", E, "_emscripten_memcpy_js", "i32 i32 i32"),
    _imp("date_now", E, "emscripten_date_now", "", "f64"),
    _imp("now_monotonic", E, "_emscripten_get_now_is_monotonic", "", "i32"),
    _imp("get_now", E, "emscripten_get_now", "", "f64"),
    _imp("dup3", E, "__syscall_dup3", "i32 i32 i32", "i32"),
    _imp("environ_sizes_get", W, "environ_sizes_get", "i32 i32", "i32"),
    _imp("environ_get", W, "environ_get", "i32 i32", "i32"),
    _imp("unlinkat", E, "__syscall_unlinkat", "i32 i32 i32", "i32"),
    _imp("rmdir", E, "__syscall_rmdir", "i32", "i32"),
    _imp("renameat", E, "__syscall_renameat", "i32 i32 i32 i32", "i32"),
    _imp("system", E, "_emscripten_system", "i32", "i32"),
    _imp("openat", E, "__syscall_openat", "i32 i32 i32 i32", "i32"),
    _imp("readlinkat", E, "__syscall_readlinkat", "i32 i32 i32 i32", "i32"),
    _imp("tzset", E, "_tzset_js", "i32 i32 i32 i32"),
    _imp("resize_heap", E, "emscripten_resize_heap", "i32", "i32"),
    _imp("throw_longjmp", E, "_emscripten_throw_longjmp", ""),
    _imp("fd_seek", W, "fd_seek", "i32 i32 i32 i32 i32", "i32"),
    _imp("mktime", E, "_mktime_js", "i32", "i32"),
    _imp("localtime", E, "_localtime_js", "i32 i32 i32"),
    _imp("gmtime", E, "_gmtime_js", "i32 i32 i32"),
]

# wasm64-unknown-emscripten-draft_2024_02_15 (aos 2.0.0 set) + emscripten_get_now
# (imported by the aos 2.0.x sqlite wasm64 build).
IMPORTS_W64 = [
    _imp("invoke", E, "invoke_vjj", "i64 i64 i64"),
    _imp("strftime", E, "strftime", "i64 i64 i64 i64", "i64"),
    _imp("exit", E, "exit", "i32"),
    _imp("wd_open", E, "__asyncjs__weavedrive_open", "i64 i64", "i32"),
    _imp("wd_read", E, "__asyncjs__weavedrive_read", "i32 i64 i64", "i32"),
    _imp("wd_close", E, "__asyncjs__weavedrive_close", "i32", "i32"),
    _imp("gas_used", E, "metering_gasUsed", "", "i32"),
    _imp("fcntl64", E, "__syscall_fcntl64", "i32 i32 i64", "i32"),
    _imp("ioctl", E, "__syscall_ioctl", "i32 i32 i64", "i32"),
    _imp("fd_close", W, "fd_close", "i32", "i32"),
    _imp("fd_read", W, "fd_read", "i32 i64 i64 i64", "i32"),
    _imp("fd_write", W, "fd_write", "i32 i64 i64 i64", "i32"),
    _imp("abort", E, "_abort_js", ""),
    _imp("memcpy_big", E, "_emscripten_memcpy_js", "i64 i64 i64"),
    _imp("date_now", E, "emscripten_date_now", "", "f64"),
    _imp("now_monotonic", E, "_emscripten_get_now_is_monotonic", "", "i32"),
    _imp("get_now", E, "emscripten_get_now", "", "f64"),
    _imp("dup3", E, "__syscall_dup3", "i32 i32 i32", "i32"),
    _imp("environ_sizes_get", W, "environ_sizes_get", "i64 i64", "i32"),
    _imp("environ_get", W, "environ_get", "i64 i64", "i32"),
    _imp("fd_seek", W, "fd_seek", "i32 i64 i32 i64", "i32"),
    _imp("mktime", E, "_mktime_js", "i64", "i64"),
    _imp("localtime", E, "_localtime_js", "i64 i64"),
    _imp("gmtime", E, "_gmtime_js", "i64 i64"),
    _imp("unlinkat", E, "__syscall_unlinkat", "i32 i64 i32", "i32"),
    _imp("rmdir", E, "__syscall_rmdir", "i64", "i32"),
    _imp("renameat", E, "__syscall_renameat", "i32 i64 i32 i64", "i32"),
    _imp("system", E, "_emscripten_system", "i64", "i32"),
    _imp("openat", E, "__syscall_openat", "i32 i64 i32 i64", "i32"),
    _imp("readlinkat", E, "__syscall_readlinkat", "i32 i64 i64 i64", "i32"),
    _imp("tzset", E, "_tzset_js", "i64 i64 i64 i64"),
    _imp("resize_heap", E, "emscripten_resize_heap", "i64", "i32"),
    _imp("throw_longjmp", E, "_emscripten_throw_longjmp", ""),
]


@dataclass
class Fmt:
    name: str  # file stem
    format: str  # Module-Format tag value
    ptr: str  # i32 | i64
    imports: list
    exports: dict  # internal function (or "memory"/"table") -> export name
    mem: tuple  # (initial pages, maximum pages)
    tz: str  # A: formats 1/2, B: formats 3/4 (i32 pair time_t), C: wasm64
    tempret: str  # import | export | none
    fs: str  # none | full
    system: str  # glue (glue sets errno) | emscripten (module maps -errno)
    asyncify: bool
    usegas: bool  # module calls metering.usegas itself (pre-metered style)

    @property
    def has(self):
        return {i[0] for i in self.imports}


EXP_EM2 = {
    "memory": "memory",
    "ctors": "__wasm_call_ctors",
    "handle": "handle",
    "main": "main",
    "table": "__indirect_function_table",
    "malloc": "malloc",
    "free": "free",
    "errno_location": "__errno_location",
    "fflush": "fflush",
    "setThrew": "setThrew",
    "stack_init": "emscripten_stack_init",
    "stack_get_free": "emscripten_stack_get_free",
    "stack_get_base": "emscripten_stack_get_base",
    "stack_get_end": "emscripten_stack_get_end",
    "stack_save": "stackSave",
    "stack_restore": "stackRestore",
    "stack_alloc": "stackAlloc",
}
EXP_EM3 = {
    "memory": "memory",
    "ctors": "__wasm_call_ctors",
    "handle": "handle",
    "main": "main",
    "table": "__indirect_function_table",
    "tempret_set": "setTempRet0",
    "fflush": "fflush",
    "setThrew": "setThrew",
    "stack_init": "emscripten_stack_init",
    "stack_get_free": "emscripten_stack_get_free",
    "stack_get_base": "emscripten_stack_get_base",
    "stack_get_end": "emscripten_stack_get_end",
    "stack_save": "stackSave",
    "stack_restore": "stackRestore",
    "stack_alloc": "stackAlloc",
    "stack_save#2": "emscripten_stack_get_current",
}
EXP_EM4 = {
    "memory": "memory",
    "ctors": "__wasm_call_ctors",
    "handle": "handle",
    "table": "__indirect_function_table",
    "free": "free",
    "fflush": "fflush",
    "main": "main",
    "malloc": "malloc",
    "setThrew": "setThrew",
    "tempret_set": "_emscripten_tempret_set",
    "stack_init": "emscripten_stack_init",
    "stack_get_free": "emscripten_stack_get_free",
    "stack_get_base": "emscripten_stack_get_base",
    "stack_get_end": "emscripten_stack_get_end",
    "stack_restore": "_emscripten_stack_restore",
    "stack_alloc": "_emscripten_stack_alloc",
    "stack_save": "emscripten_stack_get_current",
    "dyncall": "dynCall_vii",
    "asyncify_start_unwind": "asyncify_start_unwind",
    "asyncify_stop_unwind": "asyncify_stop_unwind",
    "asyncify_start_rewind": "asyncify_start_rewind",
    "asyncify_stop_rewind": "asyncify_stop_rewind",
    "asyncify_get_state": "asyncify_get_state",
}
EXP_W64 = {k: v for k, v in EXP_EM4.items() if k != "tempret_set"}
EXP_W64["dyncall"] = "dynCall_vjj"

FORMATS = [
    Fmt(
        name="emscripten1-minified",
        format="wasm32-unknown-emscripten",
        ptr="i32",
        imports=IMPORTS_EM1,
        exports={
            "memory": "E",
            "ctors": "F",
            "handle": "G",
            "main": "H",
            "table": "I",
            "malloc": "J",
            "errno_location": "K",
            "setThrew": "L",
            "stack_save": "M",
            "stack_restore": "N",
            "stack_alloc": "O",
        },
        mem=(32, 256),
        tz="A",
        tempret="import",
        fs="none",
        system="glue",
        asyncify=False,
        usegas=True,
    ),
    Fmt(
        name="emscripten2",
        format="wasm32-unknown-emscripten2",
        ptr="i32",
        imports=IMPORTS_EM2,
        exports=EXP_EM2,
        mem=(32, 256),
        tz="A",
        tempret="import",
        fs="full",
        system="glue",
        asyncify=False,
        usegas=True,
    ),
    Fmt(
        name="emscripten3",
        format="wasm32-unknown-emscripten3",
        ptr="i32",
        imports=IMPORTS_EM3,
        exports=EXP_EM3,
        mem=(32, 256),
        tz="B",
        tempret="export",
        fs="full",
        system="emscripten",
        asyncify=False,
        usegas=True,
    ),
    Fmt(
        name="emscripten4",
        format="wasm32-unknown-emscripten4",
        ptr="i32",
        imports=IMPORTS_EM4,
        exports=EXP_EM4,
        mem=(32, 1024),
        tz="B",
        tempret="export",
        fs="full",
        system="emscripten",
        asyncify=True,
        usegas=False,
    ),
    Fmt(
        name="emscripten-metering",
        format="wasm32-unknown-emscripten-metering",
        ptr="i32",
        imports=IMPORTS_EM4,
        exports=EXP_EM4,
        mem=(32, 1024),
        tz="B",
        tempret="export",
        fs="full",
        system="emscripten",
        asyncify=True,
        usegas=False,
    ),
    Fmt(
        name="wasm64",
        format="wasm64-unknown-emscripten-draft_2024_02_15",
        ptr="i64",
        imports=IMPORTS_W64,
        exports=EXP_W64,
        mem=(32, 1024),
        tz="C",
        tempret="none",
        fs="full",
        system="emscripten",
        asyncify=True,
        usegas=False,
    ),
    Fmt(
        name="wasm64-metering",
        format="wasm64-unknown-emscripten-draft_2024_10_16-metering",
        ptr="i64",
        imports=IMPORTS_W64,
        exports=EXP_W64,
        mem=(32, 1024),
        tz="C",
        tempret="none",
        fs="full",
        system="emscripten",
        asyncify=True,
        usegas=False,
    ),
]


# --------------------------------------------------------------------------
# Static strings
# --------------------------------------------------------------------------
class Strings:
    """Interns static strings into the data segment at DATA_BASE."""

    def __init__(self):
        self.addr: dict[bytes, int] = {}
        self.blob = bytearray()

    def put(self, s: str | bytes, nul: bool = False) -> tuple[int, int]:
        b = s.encode() if isinstance(s, str) else s
        key = b + (b"\0" if nul else b"")
        if key not in self.addr:
            self.addr[key] = DATA_BASE + len(self.blob)
            self.blob += key
            if DATA_BASE + len(self.blob) > STATE:
                raise SystemExit("static strings overflow into STATE")
        return self.addr[key], len(b)


def note(text: str) -> str:
    """An inline block comment naming a static string (kept free of parens and quotes)."""
    t = text.replace("(", "[").replace(")", "]").replace('"', "'").replace("\\", "/")
    t = t if len(t) <= 40 else t[:37] + "..."
    return f" (; {t} ;)"


def wat_bytes(b: bytes) -> str:
    out = []
    for c in b:
        if 0x20 <= c < 0x7F and c not in (0x22, 0x5C):
            out.append(chr(c))
        else:
            out.append("\\%02x" % c)
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------
# The template
# --------------------------------------------------------------------------
COMMANDS = [
    # (literal, takes numeric argument)
    ("count", False),
    ("argv", False),
    ("ctors", False),
    ("time", False),
    ("tz", False),
    ("env", False),
    ("longjmp", False),
    ("grow ", True),
    ("bomb", False),
    ("gas", False),
    ("usegas ", True),
    ("loop", False),
    ("recurse", False),
    ("unreachable", False),
    ("oob", False),
    ("fail", False),
    ("error-field", False),
    ("big ", True),
    ("echo", False),
    ("stdout", False),
    ("fs", False),
    ("system", False),
    ("weavedrive", False),
    ("abort", False),
]


class Gen:
    def __init__(self, f: Fmt):
        self.f = f
        self.s = Strings()
        self.psz = 4 if f.ptr == "i32" else 8

    # ---- helpers that emit WAT snippets --------------------------------
    def lit(self, text: str) -> str:
        a, n = self.s.put(text)
        return f"(call $ob_lit (P.const {a}){note(text)} (i32.const {n}))"

    def cstr(self, text: str) -> str:
        a, _ = self.s.put(text, nul=True)
        return f"(P.const {a}){note(text)}"

    def num(self, expr_i32: str) -> str:
        return f"(call $ob_i64 (i64.extend_i32_s {expr_i32}))"

    def imp(self, name: str, *args: str) -> str:
        return f"(call $imp_{name}{''.join(' ' + a for a in args)})"

    def gas(self, amount: int) -> str:
        return self.imp("usegas", f"(i32.const {amount})") if self.f.usegas else ""

    # ---- sections ----------------------------------------------------------
    def types_and_imports(self) -> str:
        lines = [
            "  (type $t_vj (func (param ptr ptr)))",
        ]
        for name, mod, fld, params, results in self.f.imports:
            p = f" (param {' '.join(params)})" if params else ""
            r = f" (result {' '.join(results)})" if results else ""
            lines.append(f'  (import "{mod}" "{fld}" (func $imp_{name}{p}{r}))')
        return "\n".join(lines)

    def export(self, key: str) -> str:
        names = [v for k, v in self.f.exports.items() if k.split("#")[0] == key]
        return "".join(f' (export "{n}")' for n in names)

    def memory_and_globals(self) -> str:
        init, mx = self.f.mem
        idx = " i64" if self.f.ptr == "i64" else ""
        heap_top = HEAP_BASE.to_bytes(self.psz, "little")
        return f"""
  (memory $mem{self.export('memory')}{idx} {init} {mx})
  (table $T{self.export('table')} 3 3 funcref)
  (elem (i32.const 1) $lj_throw $lj_normal)
  (global $__stack_pointer (mut ptr) (P.const {STACK_BASE}))
  (global $stack_base (mut ptr) (P.const {STACK_BASE}))
  (global $stack_end (mut ptr) (P.const {STACK_END}))
  (global $tempRet0 (mut i32) (i32.const 0))
  (global $async_state (mut i32) (i32.const 0))
  (global $async_data (mut ptr) (P.const 0))
  (global $ob_base (mut ptr) (P.const 0))
  (global $ob_pos (mut ptr) (P.const 0))
  (global $ob_end (mut ptr) (P.const 0))
  (data (P.const {ST_HEAP_TOP}) {wat_bytes(heap_top)})"""

    def runtime(self) -> str:
        """Allocator, memcpy, string and output-builder helpers."""
        esc_u = self.lit("\\u00")
        return f"""
  ;; ---------------------------------------------------------------- runtime
  (func $oom
    ;; allocation failure: abort like emscripten's malloc-failure path
    {self.imp('abort')}
    (unreachable))

  ;; malloc: 16-byte aligned bump allocator with a 16-byte size header; grows
  ;; linear memory through emscripten_resize_heap exactly like sbrk() does.
  (func $malloc{self.export('malloc')} (param $n ptr) (result ptr)
    (local $p ptr) (local $top ptr) (local $size ptr)
    (local.set $size (P.and (P.add (local.get $n) (P.const 15)) (P.const -16)))
    (local.set $p (P.add (P.load (P.const {ST_HEAP_TOP})) (P.const 16)))
    (local.set $top (P.add (local.get $p) (local.get $size)))
    (if (P.lt_u (local.get $top) (local.get $p)) (then (return (P.const 0))))
    (if (P.gt_u (local.get $top) (P.mul (memory.size) (P.const 65536)))
      (then
        (if (i32.eqz {self.imp('resize_heap', '(local.get $top)')})
          (then (return (P.const 0))))))
    (P.store (P.sub (local.get $p) (P.const 16)) (local.get $size))
    (P.store (P.const {ST_HEAP_TOP}) (local.get $top))
    (local.get $p))

  ;; free: releases the block when it is the most recent one (LIFO heap).
  (func $free{self.export('free')} (param $p ptr)
    (if (P.eqz (local.get $p)) (then (return)))
    (if (P.eq (P.add (local.get $p) (P.load (P.sub (local.get $p) (P.const 16))))
              (P.load (P.const {ST_HEAP_TOP})))
      (then (P.store (P.const {ST_HEAP_TOP}) (P.sub (local.get $p) (P.const 16))))))

  ;; memcpy: small copies inline, >= 512 bytes through the host (like musl/emscripten)
  (func $memcpy (param $d ptr) (param $s ptr) (param $n i32)
    (if (i32.ge_u (local.get $n) (i32.const 512))
      (then {self.imp('memcpy_big', '(local.get $d)', '(local.get $s)', '(P.from_i32 (local.get $n))')} (return)))
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (local.get $d) (i32.load8_u (local.get $s)))
        (local.set $d (P.add (local.get $d) (P.const 1)))
        (local.set $s (P.add (local.get $s) (P.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l))))

  (func $strlen (param $p ptr) (result i32)
    (local $n i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (i32.load8_u (P.add (local.get $p) (P.from_i32 (local.get $n))))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $n))

  ;; memeq: 1 when n bytes at a and b are equal
  (func $memeq (param $a ptr) (param $b ptr) (param $n i32) (result i32)
    (block $ne
      (loop $l
        (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
        (br_if $ne (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
        (local.set $a (P.add (local.get $a) (P.const 1)))
        (local.set $b (P.add (local.get $b) (P.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (i32.const 0))

  ;; find: address of the first occurrence of needle[n] in the C string hay, or 0
  (func $find (param $hay ptr) (param $needle ptr) (param $n i32) (result ptr)
    (block $none
      (loop $l
        (br_if $none (i32.eqz (i32.load8_u (local.get $hay))))
        (if (call $memeq (local.get $hay) (local.get $needle) (local.get $n))
          (then (return (local.get $hay))))
        (local.set $hay (P.add (local.get $hay) (P.const 1)))
        (br $l)))
    (P.const 0))

  ;; parse_u64: decimal digits of p[0..n) (stops at the first non-digit)
  (func $parse_u64 (param $p ptr) (param $n i32) (result i64)
    (local $v i64) (local $c i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
        (br_if $done (i32.gt_u (local.get $c) (i32.const 9)))
        (local.set $v (i64.add (i64.mul (local.get $v) (i64.const 10)) (i64.extend_i32_u (local.get $c))))
        (local.set $p (P.add (local.get $p) (P.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l)))
    (local.get $v))

  ;; ------------------------------------------------------- output builder
  (func $ob_release
    (local $p ptr)
    (local.set $p (P.load (P.const {ST_LAST_OUT})))
    (if (P.ne (local.get $p) (P.const 0))
      (then
        (call $free (local.get $p))
        (P.store (P.const {ST_LAST_OUT}) (P.const 0)))))

  (func $ob_start
    (local $p ptr)
    (local.set $p (call $malloc (P.const 4096)))
    (if (P.eqz (local.get $p)) (then (call $oom)))
    (global.set $ob_base (local.get $p))
    (global.set $ob_pos (local.get $p))
    (global.set $ob_end (P.add (local.get $p) (P.const 4096))))

  (func $ob_reserve (param $n i32)
    (local $used ptr) (local $cap ptr) (local $nb ptr)
    (if (P.le_u (P.add (global.get $ob_pos) (P.from_i32 (local.get $n))) (global.get $ob_end))
      (then (return)))
    (local.set $used (P.sub (global.get $ob_pos) (global.get $ob_base)))
    (local.set $cap (P.shl (P.sub (global.get $ob_end) (global.get $ob_base)) (P.const 1)))
    (if (P.lt_u (local.get $cap) (P.add (P.add (local.get $used) (P.from_i32 (local.get $n))) (P.const 4096)))
      (then (local.set $cap (P.add (P.add (local.get $used) (P.from_i32 (local.get $n))) (P.const 4096)))))
    (local.set $nb (call $malloc (local.get $cap)))
    (if (P.eqz (local.get $nb)) (then (call $oom)))
    (call $memcpy (local.get $nb) (global.get $ob_base) (P.to_i32 (local.get $used)))
    (call $free (global.get $ob_base))
    (global.set $ob_base (local.get $nb))
    (global.set $ob_pos (P.add (local.get $nb) (local.get $used)))
    (global.set $ob_end (P.add (local.get $nb) (local.get $cap))))

  (func $ob_byte (param $b i32)
    (call $ob_reserve (i32.const 1))
    (i32.store8 (global.get $ob_pos) (local.get $b))
    (global.set $ob_pos (P.add (global.get $ob_pos) (P.const 1))))

  (func $ob_lit (param $p ptr) (param $n i32)
    (call $ob_reserve (local.get $n))
    (call $memcpy (global.get $ob_pos) (local.get $p) (local.get $n))
    (global.set $ob_pos (P.add (global.get $ob_pos) (P.from_i32 (local.get $n)))))

  (func $hexdigit (param $v i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $v) (i32.const 10))
      (then (i32.add (local.get $v) (i32.const 48)))
      (else (i32.add (local.get $v) (i32.const 87)))))

  ;; ob_esc: append n bytes at p as the inside of a JSON string
  (func $ob_esc (param $p ptr) (param $n i32)
    (local $c i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $c (i32.load8_u (local.get $p)))
        (if (i32.or (i32.eq (local.get $c) (i32.const 34)) (i32.eq (local.get $c) (i32.const 92)))
          (then (call $ob_byte (i32.const 92)) (call $ob_byte (local.get $c)))
          (else
            (if (i32.lt_u (local.get $c) (i32.const 32))
              (then
                {esc_u}
                (call $ob_byte (call $hexdigit (i32.shr_u (local.get $c) (i32.const 4))))
                (call $ob_byte (call $hexdigit (i32.and (local.get $c) (i32.const 15)))))
              (else (call $ob_byte (local.get $c))))))
        (local.set $p (P.add (local.get $p) (P.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l))))

  (func $ob_cstr (param $p ptr)
    (if (P.eqz (local.get $p)) (then {self.lit('(null)')} (return)))
    (call $ob_esc (local.get $p) (call $strlen (local.get $p))))

  (func $ob_u64 (param $v i64)
    (local $q ptr)
    (local.set $q (P.const {SCR_NUMFMT + 31}))
    (loop $l
      (local.set $q (P.sub (local.get $q) (P.const 1)))
      (i32.store8 (local.get $q) (i32.add (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10))) (i32.const 48)))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $l (i64.ne (local.get $v) (i64.const 0))))
    (call $ob_lit (local.get $q) (P.to_i32 (P.sub (P.const {SCR_NUMFMT + 31}) (local.get $q)))))

  (func $ob_i64 (param $v i64)
    (if (i64.lt_s (local.get $v) (i64.const 0))
      (then (call $ob_byte (i32.const 45)) (local.set $v (i64.sub (i64.const 0) (local.get $v)))))
    (call $ob_u64 (local.get $v)))

  ;; ob_f64: JS-like rendering for the values hosts return (NaN, integers, decimals)
  (func $ob_f64 (param $v f64)
    (local $ip i64) (local $fr i64)
    (if (f64.ne (local.get $v) (local.get $v)) (then {self.lit('NaN')} (return)))
    (if (f64.lt (local.get $v) (f64.const 0))
      (then (call $ob_byte (i32.const 45)) (local.set $v (f64.neg (local.get $v)))))
    (if (f64.eq (local.get $v) (f64.const inf)) (then {self.lit('Infinity')} (return)))
    (if (f64.ge (local.get $v) (f64.const 9.2e18)) (then {self.lit('huge')} (return)))
    (local.set $ip (i64.trunc_f64_u (local.get $v)))
    (call $ob_u64 (local.get $ip))
    (local.set $fr (i64.trunc_f64_u (f64.nearest (f64.mul (f64.sub (local.get $v) (f64.convert_i64_u (local.get $ip))) (f64.const 1000000)))))
    (if (i64.ne (local.get $fr) (i64.const 0))
      (then
        (call $ob_byte (i32.const 46))
        (call $ob_byte (i32.add (i32.const 48) (i32.wrap_i64 (i64.div_u (local.get $fr) (i64.const 100000)))))
        (call $ob_byte (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (i64.div_u (local.get $fr) (i64.const 10000)) (i64.const 10)))))
        (call $ob_byte (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (i64.div_u (local.get $fr) (i64.const 1000)) (i64.const 10)))))
        (call $ob_byte (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (i64.div_u (local.get $fr) (i64.const 100)) (i64.const 10)))))
        (call $ob_byte (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (i64.div_u (local.get $fr) (i64.const 10)) (i64.const 10)))))
        (call $ob_byte (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $fr) (i64.const 10))))))))

  ;; response envelope
  (func $resp_begin
    (call $ob_start)
    {self.lit('{"ok":true,"response":{"Output":"')})

  (func $ob_finish (result ptr)
    (call $ob_byte (i32.const 0))
    (P.store (P.const {ST_LAST_OUT}) (global.get $ob_base))
    (global.get $ob_base))

  (func $resp_end (result ptr)
    {self.lit('","Messages":[],"Spawns":[],"Assignments":[]}}')}
    (call $ob_finish))

  ;; zero n bytes
  (func $bzero (param $p ptr) (param $n i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store8 (local.get $p) (i32.const 0))
        (local.set $p (P.add (local.get $p) (P.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $l))))"""

    def emscripten_runtime(self) -> str:
        """Stack, ctors, main, setThrew, errno, tempRet0, stdio, asyncify exports."""
        f = self.f
        out = [
            f"""
  ;; -------------------------------------------------------- emscripten ABI
  (func $ctors{self.export('ctors')}
    (i32.store (P.const {ST_CTORS}) (i32.add (i32.load (P.const {ST_CTORS})) (i32.const 1))))

  (func $stack_init{self.export('stack_init')}
    (global.set $stack_base (P.const {STACK_BASE}))
    (global.set $stack_end (P.const {STACK_END}))
    (global.set $__stack_pointer (P.const {STACK_BASE}))
    (i32.store (P.const {ST_STACK_INIT}) (i32.add (i32.load (P.const {ST_STACK_INIT})) (i32.const 1))))

  (func $stack_get_base{self.export('stack_get_base')} (result ptr) (global.get $stack_base))
  (func $stack_get_end{self.export('stack_get_end')} (result ptr) (global.get $stack_end))
  (func $stack_get_free{self.export('stack_get_free')} (result ptr)
    (P.sub (global.get $__stack_pointer) (global.get $stack_end)))
  (func $stack_save{self.export('stack_save')} (result ptr) (global.get $__stack_pointer))
  (func $stack_restore{self.export('stack_restore')} (param $p ptr) (global.set $__stack_pointer (local.get $p)))
  (func $stack_alloc{self.export('stack_alloc')} (param $n ptr) (result ptr)
    (local $sp ptr)
    (local.set $sp (P.and (P.sub (global.get $__stack_pointer) (local.get $n)) (P.const -16)))
    ;; stack overflow (below the stack end or wrapped around): trap
    (if (i32.or (P.lt_u (local.get $sp) (global.get $stack_end))
                (P.gt_u (local.get $sp) (global.get $__stack_pointer)))
      (then (unreachable)))
    (global.set $__stack_pointer (local.get $sp))
    (local.get $sp))

  ;; main(argc, argv): records argc and a copy of argv[0]
  (func $main{self.export('main')} (param $argc i32) (param $argv ptr) (result i32)
    (local $a0 ptr) (local $n i32)
    (i32.store (P.const {ST_MAIN}) (i32.add (i32.load (P.const {ST_MAIN})) (i32.const 1)))
    (i32.store (P.const {ST_ARGC}) (local.get $argc))
    (i32.store8 (P.const {ST_ARGV0}) (i32.const 0))
    (if (i32.and (i32.gt_s (local.get $argc) (i32.const 0)) (P.ne (local.get $argv) (P.const 0)))
      (then
        (local.set $a0 (P.load (local.get $argv)))
        (if (P.ne (local.get $a0) (P.const 0))
          (then
            (local.set $n (call $strlen (local.get $a0)))
            (if (i32.gt_u (local.get $n) (i32.const 255)) (then (local.set $n (i32.const 255))))
            (call $memcpy (P.const {ST_ARGV0}) (local.get $a0) (local.get $n))
            (i32.store8 (P.add (P.const {ST_ARGV0}) (P.from_i32 (local.get $n))) (i32.const 0))))))
    (i32.const 0))

  ;; setThrew(threw, value): emscripten's longjmp bookkeeping (__THREW__)
  (func $setThrew{self.export('setThrew')} (param $threw ptr) (param $value i32)
    (if (P.eqz (P.load (P.const {ST_THREW})))
      (then
        (P.store (P.const {ST_THREW}) (local.get $threw))
        (i32.store (P.const {ST_THREW_VALUE}) (local.get $value)))))

  (func $errno_location{self.export('errno_location')} (result ptr) (P.const {ST_ERRNO}))

  ;; tempRet0 kept in the module (formats 3/4: the glue sets it for i64 results)
  (func $tempret_set{self.export('tempret_set')} (param $v i32) (global.set $tempRet0 (local.get $v)))

  ;; fflush(stream): writes the buffered stdout bytes with fd_write(1, ...);
  ;; stream 0 flushes every stream (stdout is the only buffered one)
  (func $fflush{self.export('fflush')} (param $stream ptr) (result i32)
    (local $n i32) (local $rc i32)
    (if (i32.and (P.ne (local.get $stream) (P.const 0)) (P.ne (local.get $stream) (P.const {STDOUT_FILE})))
      (then (return (i32.const 0))))
    (local.set $n (i32.load (P.const {ST_STDOUT_LEN})))
    (if (i32.eqz (local.get $n)) (then (return (i32.const 0))))
    (P.store (P.const {SCR_IOV}) (P.const {ST_STDOUT_BUF}))
    (P.store (P.const {SCR_IOV + self.psz}) (P.from_i32 (local.get $n)))
    (P.store (P.const {SCR_NUM}) (P.const 0))
    (local.set $rc {self.imp('fd_write', '(i32.const 1)', f'(P.const {SCR_IOV})', '(P.const 1)', f'(P.const {SCR_NUM})')})
    (i32.store (P.const {ST_FLUSH_RC}) (local.get $rc))
    (i32.store (P.const {ST_FLUSH_N}) (P.to_i32 (P.load (P.const {SCR_NUM}))))
    (i32.store (P.const {ST_STDOUT_LEN}) (i32.const 0))
    (if (result i32) (i32.eqz (local.get $rc)) (then (i32.const 0)) (else (i32.const -1))))

  (func $stdout_put (param $p ptr) (param $n i32)
    (local $len i32)
    (local.set $len (i32.load (P.const {ST_STDOUT_LEN})))
    (if (i32.gt_u (i32.add (local.get $len) (local.get $n)) (i32.const {STDOUT_CAP}))
      (then (drop (call $fflush (P.const {STDOUT_FILE}))) (local.set $len (i32.const 0))))
    (call $memcpy (P.add (P.const {ST_STDOUT_BUF}) (P.from_i32 (local.get $len))) (local.get $p) (local.get $n))
    (i32.store (P.const {ST_STDOUT_LEN}) (i32.add (local.get $len) (local.get $n))))

  ;; longjmp probes, called through the table by invoke_*
  (func $lj_throw (type $t_vj) (param $a ptr) (param $b ptr)
    ;; take a 64-byte stack frame, mark, then longjmp (the host unwinds us)
    (global.set $__stack_pointer (P.sub (global.get $__stack_pointer) (P.const 64)))
    (i32.store (P.const {ST_LJ_MARK1}) (P.to_i32 (P.add (local.get $a) (local.get $b))))
    {self.imp('throw_longjmp')}
    (i32.store (P.const {ST_LJ_MARK2}) (i32.const 1))
    (global.set $__stack_pointer (P.add (global.get $__stack_pointer) (P.const 64))))

  (func $lj_normal (type $t_vj) (param $a ptr) (param $b ptr)
    (global.set $__stack_pointer (P.sub (global.get $__stack_pointer) (P.const 64)))
    (i32.store (P.const {ST_LJ_MARK1}) (P.to_i32 (P.add (local.get $a) (local.get $b))))
    (i32.store (P.const {ST_LJ_MARK2}) (i32.const 1))
    (global.set $__stack_pointer (P.add (global.get $__stack_pointer) (P.const 64))))"""
        ]
        if "dyncall" in f.exports:
            out.append(
                f"""
  ;; dynCall_v{'jj' if f.ptr == 'i64' else 'ii'}(index, a, b): what the glue's invoke_* calls
  (func $dyncall{self.export('dyncall')} (param $idx i32) (param $a ptr) (param $b ptr)
    (call_indirect $T (type $t_vj) (local.get $a) (local.get $b) (local.get $idx)))"""
            )
        if f.asyncify:
            out.append(
                f"""
  ;; Asyncify runtime (binaryen ABI): state 0 normal, 1 unwinding, 2 rewinding;
  ;; data points at {{current, end}} of the save area the glue allocated.
  (func $asyncify_start_unwind{self.export('asyncify_start_unwind')} (param $d ptr)
    (global.set $async_state (i32.const 1))
    (global.set $async_data (local.get $d))
    (if (P.gt_u (P.load (local.get $d)) (P.load (P.add (local.get $d) (P.const {self.psz}))))
      (then (unreachable))))
  (func $asyncify_stop_unwind{self.export('asyncify_stop_unwind')}
    (global.set $async_state (i32.const 0))
    (if (P.gt_u (P.load (global.get $async_data)) (P.load (P.add (global.get $async_data) (P.const {self.psz}))))
      (then (unreachable))))
  (func $asyncify_start_rewind{self.export('asyncify_start_rewind')} (param $d ptr)
    (global.set $async_state (i32.const 2))
    (global.set $async_data (local.get $d))
    (if (P.gt_u (P.load (local.get $d)) (P.load (P.add (local.get $d) (P.const {self.psz}))))
      (then (unreachable))))
  (func $asyncify_stop_rewind{self.export('asyncify_stop_rewind')}
    (global.set $async_state (i32.const 0))
    (if (P.gt_u (P.load (global.get $async_data)) (P.load (P.add (global.get $async_data) (P.const {self.psz}))))
      (then (unreachable))))
  (func $asyncify_get_state{self.export('asyncify_get_state')} (result i32) (global.get $async_state))"""
            )
        return "\n".join(out)

    # ---- commands ------------------------------------------------------------
    def cmd_funcs(self) -> str:
        f, has = self.f, self.f.has
        P = self.psz
        c = []

        def fn(name, body, params="", locals_=""):
            c.append(f"\n  (func $cmd_{name}{params} (result ptr){locals_}\n{body}\n    (call $resp_end))")

        # count
        fn(
            "count",
            f"""    (i32.store (P.const {ST_COUNTER}) (i32.add (i32.load (P.const {ST_COUNTER})) (i32.const 1)))
    (call $resp_begin)
    {self.lit('count=')}
    {self.num(f'(i32.load (P.const {ST_COUNTER}))')}""",
        )
        # argv
        fn(
            "argv",
            f"""    (call $resp_begin)
    {self.lit('main=')}
    {self.num(f'(i32.load (P.const {ST_MAIN}))')}
    {self.lit(' argc=')}
    {self.num(f'(i32.load (P.const {ST_ARGC}))')}
    {self.lit(' argv0=')}
    (call $ob_cstr (P.const {ST_ARGV0}))""",
        )
        # ctors
        fn(
            "ctors",
            f"""    (call $resp_begin)
    {self.lit('ctors=')}
    {self.num(f'(i32.load (P.const {ST_CTORS}))')}
    {self.lit(' stack_init=')}
    {self.num(f'(i32.load (P.const {ST_STACK_INIT}))')}
    {self.lit(' main=')}
    {self.num(f'(i32.load (P.const {ST_MAIN}))')}
    {self.lit(' stack_base=')}
    (call $ob_u64 (P.to_i64 (global.get $stack_base)))
    {self.lit(' stack_end=')}
    (call $ob_u64 (P.to_i64 (global.get $stack_end)))""",
        )
        # time
        t = ["    (call $resp_begin)", f"    {self.lit('monotonic=')}", f"    {self.num(self.imp('now_monotonic'))}"]
        for _ in range(3):
            t.append(f"    {self.lit(' date_now=')}")
            t.append(f"    (call $ob_f64 {self.imp('date_now')})")
            if "get_now" in has:
                t.append(f"    {self.lit(' get_now=')}")
                t.append(f"    (call $ob_f64 {self.imp('get_now')})")
        fn("time", "\n".join(t))
        # tz
        fn("tz", self.tz_body(), locals_=" (local $t i64) (local $t2 i64)")
        # env
        fn(
            "env",
            f"""    (local.set $rc {self.imp('environ_sizes_get', f'(P.const {SCR_ENVC})', f'(P.const {SCR_ENVS})')})
    (local.set $count (P.to_i32 (P.load (P.const {SCR_ENVC}))))
    (local.set $size (P.to_i32 (P.load (P.const {SCR_ENVS}))))
    (call $resp_begin)
    {self.lit('environ_sizes_get=')}
    {self.num('(local.get $rc)')}
    {self.lit(' count=')}
    {self.num('(local.get $count)')}
    {self.lit(' size=')}
    {self.num('(local.get $size)')}
    (local.set $arr (call $malloc (P.from_i32 (i32.add (i32.mul (local.get $count) (i32.const {P})) (i32.add (local.get $size) (i32.const 16))))))
    (if (P.eqz (local.get $arr)) (then (call $oom)))
    (local.set $rc {self.imp('environ_get', '(local.get $arr)', f'(P.add (local.get $arr) (P.from_i32 (i32.mul (local.get $count) (i32.const {P}))))')})
    {self.lit(' environ_get=')}
    {self.num('(local.get $rc)')}
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        {self.lit(' [')}
        (call $ob_cstr (P.load (P.add (local.get $arr) (P.from_i32 (i32.mul (local.get $i) (i32.const {P}))))))
        {self.lit(']')}
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (call $free (local.get $arr))""",
            locals_=" (local $rc i32) (local $count i32) (local $size i32) (local $i i32) (local $arr ptr)",
        )
        # longjmp
        tempret = ""
        if f.tempret == "import":
            tempret = f"""
    {self.imp('set_tempret', '(i32.const 42)')}
    {self.lit(' tempret=')}
    {self.num(self.imp('get_tempret'))}"""
        fn(
            "longjmp",
            f"""    (call $resp_begin)
    ;; 1. callee longjmps: the host must unwind it, restore the stack and setThrew(1, 0)
    (P.store (P.const {ST_THREW}) (P.const 0))
    (i32.store (P.const {ST_THREW_VALUE}) (i32.const 0))
    (i32.store (P.const {ST_LJ_MARK1}) (i32.const 0))
    (i32.store (P.const {ST_LJ_MARK2}) (i32.const 0))
    (local.set $sp (global.get $__stack_pointer))
    {self.imp('invoke', '(P.const 1)', '(P.const 3)', '(P.const 4)')}
    (local.set $threw (P.to_i32 (P.load (P.const {ST_THREW}))))
    {self.lit('throw: threw=')}
    {self.num('(local.get $threw)')}
    {self.lit(' value=')}
    {self.num(f'(i32.load (P.const {ST_THREW_VALUE}))')}
    {self.lit(' mark1=')}
    {self.num(f'(i32.load (P.const {ST_LJ_MARK1}))')}
    {self.lit(' mark2=')}
    {self.num(f'(i32.load (P.const {ST_LJ_MARK2}))')}
    {self.lit(' sp_restored=')}
    {self.num('(P.eq (global.get $__stack_pointer) (local.get $sp))')}
    (if (i32.eq (local.get $threw) (i32.const 1)) (then {self.lit(' caught')}))
    ;; 2. callee returns normally: nothing thrown
    (P.store (P.const {ST_THREW}) (P.const 0))
    (i32.store (P.const {ST_LJ_MARK1}) (i32.const 0))
    (i32.store (P.const {ST_LJ_MARK2}) (i32.const 0))
    {self.imp('invoke', '(P.const 2)', '(P.const 5)', '(P.const 6)')}
    {self.lit('; normal: threw=')}
    {self.num(f'(P.to_i32 (P.load (P.const {ST_THREW})))')}
    {self.lit(' mark1=')}
    {self.num(f'(i32.load (P.const {ST_LJ_MARK1}))')}
    {self.lit(' mark2=')}
    {self.num(f'(i32.load (P.const {ST_LJ_MARK2}))')}
    {self.lit(' sp_restored=')}
    {self.num('(P.eq (global.get $__stack_pointer) (local.get $sp))')}{tempret}""",
            locals_=" (local $sp ptr) (local $threw i32)",
        )
        # grow N
        fn(
            "grow",
            f"""    (local.set $r {self.imp('resize_heap', '(P.from_i64 (local.get $n))')})
    (call $resp_begin)
    {self.lit('grow=')}
    {self.num('(local.get $r)')}
    {self.lit(' pages=')}
    (call $ob_u64 (P.to_i64 (memory.size)))""",
            params=" (param $n i64)",
            locals_=" (local $r i32)",
        )
        # bomb
        fn(
            "bomb",
            f"""    (block $done
      (loop $l
        (local.set $calls (i32.add (local.get $calls) (i32.const 1)))
        (br_if $done (i32.eqz {self.imp('resize_heap', f'(P.add (P.mul (memory.size) (P.const 65536)) (P.const {BOMB_STEP}))')}))
        (br_if $l (i32.lt_u (local.get $calls) (i32.const 100000)))))
    (call $resp_begin)
    {self.lit('bomb calls=')}
    {self.num('(local.get $calls)')}
    {self.lit(' pages=')}
    (call $ob_u64 (P.to_i64 (memory.size)))""",
            locals_=" (local $calls i32)",
        )
        # gas / usegas
        if "gas_used" in has:
            fn("gas", f"    (call $resp_begin)\n    {self.lit('gas_used=')}\n    {self.num(self.imp('gas_used'))}")
        if f.usegas:
            fn(
                "usegas",
                f"""    {self.imp('usegas', '(i32.wrap_i64 (local.get $n))')}
    (call $resp_begin)
    {self.lit('usegas=')}
    (call $ob_u64 (local.get $n))""",
                params=" (param $n i64)",
            )
        # loop
        c.append(
            f"""
  (func $cmd_loop (result ptr)
    (loop $l
      {self.gas(LOOP_GAS)}
      (i32.store (P.const {ST_LOOPS}) (i32.add (i32.load (P.const {ST_LOOPS})) (i32.const 1)))
      (br $l))
    (unreachable))"""
        )
        # recurse
        c.append(
            f"""
  (func $recurse (param $d i32) (result i32)
    {self.gas(RECURSE_GAS)}
    (i32.store (P.const {ST_DEPTH}) (local.get $d))
    (i32.add (call $recurse (i32.add (local.get $d) (i32.const 1))) (i32.const 1)))"""
        )
        fn(
            "recurse",
            f"""    (local.set $r (call $recurse (i32.const 0)))
    (call $resp_begin)
    {self.lit('recurse returned ')}
    {self.num('(local.get $r)')}""",
            locals_=" (local $r i32)",
        )
        # unreachable / oob
        c.append("\n  (func $cmd_unreachable (result ptr)\n    (unreachable))")
        oob = OOB_ADDR32 if f.ptr == "i32" else OOB_ADDR64
        fn(
            "oob",
            f"""    (local.set $v (i32.load (P.const {oob})))
    (call $resp_begin)
    {self.lit('oob read ')}
    {self.num('(local.get $v)')}""",
            locals_=" (local $v i32)",
        )
        # fail / error-field
        c.append(
            f"""
  (func $cmd_fail (result ptr)
    (i32.store (P.const {ST_COUNTER}) (i32.add (i32.load (P.const {ST_COUNTER})) (i32.const 100)))
    (call $ob_start)
    {self.lit('{"ok":false,"response":"boom"}')}
    (call $ob_finish))

  (func $cmd_error_field (result ptr)
    (i32.store (P.const {ST_COUNTER}) (i32.add (i32.load (P.const {ST_COUNTER})) (i32.const 1000)))
    (call $ob_start)
    {self.lit('{"ok":true,"response":{"Output":"","Error":"handler failed","Messages":[],"Spawns":[],"Assignments":[]}}')}
    (call $ob_finish))"""
        )
        # big N
        fn(
            "big",
            """    (call $resp_begin)
    (call $ob_reserve (i32.wrap_i64 (local.get $n)))
    (block $done
      (loop $l
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (i32.store8 (global.get $ob_pos) (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $i) (i64.const 10)))))
        (global.set $ob_pos (P.add (global.get $ob_pos) (P.const 1)))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br $l)))""",
            params=" (param $n i64)",
            locals_=" (local $i i64)",
        )
        # echo
        fn(
            "echo",
            f"""    (call $resp_begin)
    {self.lit('msg=')}
    {self.num('(call $strlen (local.get $msg))')}
    {self.lit(' env=')}
    {self.num('(call $strlen (local.get $env))')}""",
            params=" (param $msg ptr) (param $env ptr)",
        )
        # stdout
        a, n = self.s.put("hello")
        fn(
            "stdout",
            f"""    (call $stdout_put (P.const {a}) (i32.const {n}))
    (local.set $rc (call $fflush (P.const {STDOUT_FILE})))
    (call $resp_begin)
    {self.lit('fflush=')}
    {self.num('(local.get $rc)')}
    {self.lit(' fd_write=')}
    {self.num(f'(i32.load (P.const {ST_FLUSH_RC}))')}
    {self.lit(' nwritten=')}
    {self.num(f'(i32.load (P.const {ST_FLUSH_N}))')}""",
            locals_=" (local $rc i32)",
        )
        # fs
        fn("fs", self.fs_body(), locals_=" (local $fd i32) (local $rc i32) (local $n i32)")
        # system
        fn("system", self.system_body(), locals_=" (local $r i32)")
        # weavedrive
        if f.asyncify:
            fn(
                "weavedrive",
                f"""    (call $resp_begin)
    {self.lit('weavedrive_open=')}
    {self.num('(local.get $r)')}""",
                params=" (param $r i32)",
            )
        # abort
        c.append(f"\n  (func $cmd_abort (result ptr)\n    {self.imp('abort')}\n    (unreachable))")
        # unknown / unsupported
        fn(
            "unknown",
            f"""    (call $resp_begin)
    {self.lit('unknown command: ')}
    (call $ob_esc (local.get $p) (local.get $n))""",
            params=" (param $p ptr) (param $n i32)",
        )
        return "\n".join(c)

    def tz_body(self) -> str:
        f = self.f
        P = self.psz
        tm_fields = ["sec", "min", "hour", "mday", "mon", "year", "wday", "yday", "isdst"]
        gmtoff_off = 36 if f.ptr == "i32" else 40

        def print_tm(label, addr):
            parts = [f"    {self.lit(label)}"]
            for i, _ in enumerate(tm_fields):
                if i:
                    parts.append("    (call $ob_byte (i32.const 44))")
                parts.append(f"    {self.num(f'(i32.load (P.const {addr + 4 * i}))')}")
            parts.append(f"    {self.lit(' gmtoff=')}")
            parts.append(f"    (call $ob_i64 (P.to_i64s (P.load (P.const {addr + gmtoff_off}))))")
            return "\n".join(parts)

        b = [
            f"    (call $bzero (P.const {SCRATCH}) (i32.const {SCR_STRF + 128 - SCRATCH}))",
            f"    (i32.store (P.const {SCR_TZ_TIMEZONE}) (i32.const -1))",
            f"    (i32.store (P.const {SCR_TZ_DAYLIGHT}) (i32.const -1))",
        ]
        if f.tz == "A":
            b.append(f"    {self.imp('tzset', f'(P.const {SCR_TZ_TIMEZONE})', f'(P.const {SCR_TZ_DAYLIGHT})', f'(P.const {SCR_TZ_NAMES})')}")
            std = f"(P.load (P.const {SCR_TZ_NAMES}))"
            dst = f"(P.load (P.const {SCR_TZ_NAMES + P}))"
            b.append(f"    (i32.store (P.const {SCR_TIME}) (i32.const {TZ_TIME}))")
            b.append(f"    {self.imp('localtime', f'(P.const {SCR_TIME})', f'(P.const {SCR_TM1})')}")
            b.append(f"    {self.imp('gmtime', f'(P.const {SCR_TIME})', f'(P.const {SCR_TM2})')}")
        elif f.tz == "B":
            b.append(f"    {self.imp('tzset', f'(P.const {SCR_TZ_TIMEZONE})', f'(P.const {SCR_TZ_DAYLIGHT})', f'(P.const {SCR_TZ_STD})', f'(P.const {SCR_TZ_DST})')}")
            std, dst = f"(P.const {SCR_TZ_STD})", f"(P.const {SCR_TZ_DST})"
            b.append(f"    {self.imp('localtime', f'(i32.const {TZ_TIME})', '(i32.const 0)', f'(P.const {SCR_TM1})')}")
            b.append(f"    {self.imp('gmtime', f'(i32.const {TZ_TIME})', '(i32.const 0)', f'(P.const {SCR_TM2})')}")
        else:
            b.append(f"    (i64.store (P.const {SCR_TZ_TIMEZONE}) (i64.const -1))")
            b.append(f"    {self.imp('tzset', f'(P.const {SCR_TZ_TIMEZONE})', f'(P.const {SCR_TZ_DAYLIGHT})', f'(P.const {SCR_TZ_STD})', f'(P.const {SCR_TZ_DST})')}")
            std, dst = f"(P.const {SCR_TZ_STD})", f"(P.const {SCR_TZ_DST})"
            b.append(f"    {self.imp('localtime', f'(i64.const {TZ_TIME})', f'(P.const {SCR_TM1})')}")
            b.append(f"    {self.imp('gmtime', f'(i64.const {TZ_TIME})', f'(P.const {SCR_TM2})')}")
        # mktime on 2023-11-14 22:13:20 with tm_isdst = -1
        for i, v in enumerate([20, 13, 22, 14, 10, 123, 0, 0, -1]):
            b.append(f"    (i32.store (P.const {SCR_TM3 + 4 * i}) (i32.const {v}))")
        if f.tz == "C":
            b.append(f"    (local.set $t {self.imp('mktime', f'(P.const {SCR_TM3})')})")
        elif f.tempret == "export":
            b.append("    (global.set $tempRet0 (i32.const 0))")
            b.append(f"    (local.set $t (i64.extend_i32_u {self.imp('mktime', f'(P.const {SCR_TM3})')}))")
            b.append("    (local.set $t (i64.or (local.get $t) (i64.shl (i64.extend_i32_u (global.get $tempRet0)) (i64.const 32))))")
        else:
            b.append(f"    (local.set $t (i64.extend_i32_s {self.imp('mktime', f'(P.const {SCR_TM3})')}))")
        fmt_a, _ = self.s.put("%Y-%m-%d %H:%M:%S %a %b %j", nul=True)
        b.append(
            f"    (local.set $t2 (P.to_i64s {self.imp('strftime', f'(P.const {SCR_STRF})', '(P.const 100)', f'(P.const {fmt_a})', f'(P.const {SCR_TM1})')}))"
        )
        b.append("    (call $resp_begin)")
        b.append(f"    {self.lit('timezone=')}")
        b.append(f"    (call $ob_i64 (P.to_i64s (P.load (P.const {SCR_TZ_TIMEZONE}))))")
        b.append(f"    {self.lit(' daylight=')}")
        b.append(f"    {self.num(f'(i32.load (P.const {SCR_TZ_DAYLIGHT}))')}")
        b.append(f"    {self.lit(' std=')}")
        b.append(f"    (call $ob_cstr {std})")
        b.append(f"    {self.lit(' dst=')}")
        b.append(f"    (call $ob_cstr {dst})")
        b.append(print_tm(" local=", SCR_TM1))
        b.append(print_tm(" gm=", SCR_TM2))
        b.append(f"    {self.lit(' mktime=')}")
        b.append("    (call $ob_i64 (local.get $t))")
        b.append(print_tm(" tm=", SCR_TM3))
        b.append(f"    {self.lit(' strftime=')}")
        b.append("    (call $ob_i64 (local.get $t2))")
        b.append(f"    {self.lit(':')}")
        b.append(f"    (call $ob_cstr (P.const {SCR_STRF}))")
        return "\n".join(b)

    def fs_body(self) -> str:
        f = self.f
        P = self.psz
        p1 = self.cstr("/tmp/watmods.txt")
        p2 = self.cstr("/tmp/watmods-renamed.txt")
        content_a, content_n = self.s.put("persist me")
        at = "(i32.const -100)"

        def seek(whence):
            if f.ptr == "i64":
                return self.imp("fd_seek", "(local.get $fd)", "(i64.const 0)", f"(i32.const {whence})", f"(P.const {SCR_SEEK})")
            return self.imp("fd_seek", "(local.get $fd)", "(i32.const 0)", "(i32.const 0)", f"(i32.const {whence})", f"(P.const {SCR_SEEK})")

        def iov(addr, n):
            return f"""    (P.store (P.const {SCR_IOV}) (P.const {addr}))
    (P.store (P.const {SCR_IOV + P}) (P.const {n}))
    (P.store (P.const {SCR_NUM}) (P.const 0))"""

        b = [
            f"    (i64.store (P.const {SCR_MODE}) (i64.const 420))",
            "    (call $resp_begin)",
            f"    (local.set $fd {self.imp('openat', at, p1, '(i32.const 577)', f'(P.const {SCR_MODE})')})",
            f"    {self.lit('open_w=')}",
            f"    {self.num('(local.get $fd)')}",
        ]
        if f.fs == "full":
            b += [
                iov(content_a, content_n),
                f"    (local.set $rc {self.imp('fd_write', '(local.get $fd)', f'(P.const {SCR_IOV})', '(P.const 1)', f'(P.const {SCR_NUM})')})",
                f"    {self.lit(' write=')}",
                f"    {self.num('(local.get $rc)')}",
                "    (call $ob_byte (i32.const 47))",
                f"    {self.num(f'(P.to_i32 (P.load (P.const {SCR_NUM})))')}",
            ]
        b += [
            f"    {self.lit(' getfl=')}",
            f"    {self.num(self.imp('fcntl64', '(local.get $fd)', '(i32.const 3)', '(P.const 0)'))}",
        ]
        if f.fs == "full":
            b += [
                f"    {self.lit(' close=')}",
                f"    {self.num(self.imp('fd_close', '(local.get $fd)'))}",
                f"    (local.set $fd {self.imp('openat', at, p1, '(i32.const 0)', '(P.const 0)')})",
                f"    {self.lit(' open_r=')}",
                f"    {self.num('(local.get $fd)')}",
            ]
        b += [
            f"    (i64.store (P.const {SCR_SEEK}) (i64.const -1))",
            f"    (local.set $rc {seek(2)})",
            f"    {self.lit(' seek_end=')}",
            f"    {self.num('(local.get $rc)')}",
            "    (call $ob_byte (i32.const 47))",
            f"    (call $ob_i64 (i64.load (P.const {SCR_SEEK})))",
        ]
        if f.fs == "full":
            b += [
                f"    (local.set $rc {seek(0)})",
                f"    {self.lit(' seek_set=')}",
                f"    {self.num('(local.get $rc)')}",
                "    (call $ob_byte (i32.const 47))",
                f"    (call $ob_i64 (i64.load (P.const {SCR_SEEK})))",
            ]
        b += [
            iov(SCR_READBUF, 64),
            f"    (local.set $rc {self.imp('fd_read', '(local.get $fd)', f'(P.const {SCR_IOV})', '(P.const 1)', f'(P.const {SCR_NUM})')})",
            f"    (local.set $n (P.to_i32 (P.load (P.const {SCR_NUM}))))",
            f"    {self.lit(' read=')}",
            f"    {self.num('(local.get $rc)')}",
            "    (call $ob_byte (i32.const 47))",
            f"    {self.num('(local.get $n)')}",
            "    (if (i32.eqz (local.get $rc))",
            f"      (then {self.lit(':')} (call $ob_esc (P.const {SCR_READBUF}) (local.get $n))))",
            f"    {self.lit(' close=')}",
            f"    {self.num(self.imp('fd_close', '(local.get $fd)'))}",
            f"    {self.lit(' rename=')}",
            f"    {self.num(self.imp('renameat', at, p1, at, p2))}",
            f"    {self.lit(' unlink=')}",
            f"    {self.num(self.imp('unlinkat', at, p2, '(i32.const 0)'))}",
        ]
        if f.fs == "full":
            b += [
                f"    {self.lit(' reopen=')}",
                f"    {self.num(self.imp('openat', at, p2, '(i32.const 0)', '(P.const 0)'))}",
            ]
        else:
            b.append(f"    {self.lit(' (no FS in this glue: fd_write skipped)')}")
        return "\n".join(b)

    def system_body(self) -> str:
        f = self.f
        cmd = self.cstr("exit 3")
        if f.system == "glue":
            call0 = self.imp("system", "(P.const 0)")
            call1 = self.imp("system", cmd)
            wrap = ""
        else:
            # emscripten's libc system(): negative host result -> errno, -1
            call0 = self.imp("system", "(P.const 0)")
            call1 = self.imp("system", cmd)
            wrap = f"""
    (if (i32.lt_s (local.get $r) (i32.const 0))
      (then
        (i32.store (P.const {ST_ERRNO}) (i32.sub (i32.const 0) (local.get $r)))
        (local.set $r (i32.const -1))))"""
        return f"""    (i32.store (P.const {ST_ERRNO}) (i32.const 0))
    (call $resp_begin)
    {self.lit('system(NULL)=')}
    {self.num(call0)}
    (local.set $r {call1}){wrap}
    {self.lit(' system(exit 3)=')}
    {self.num('(local.get $r)')}
    {self.lit(' errno=')}
    {self.num(f'(i32.load (P.const {ST_ERRNO}))')}"""

    def handle(self) -> str:
        f, has = self.f, self.f.has
        P = self.psz
        key_a, key_n = self.s.put('"Data":"')
        wd_path = self.cstr("/data/xyz")
        wd_mode = self.cstr("r")
        rewind = ""
        wd_dispatch = ""
        if f.asyncify:
            rewind = f"""
    ;; Asyncify rewind: after the async weavedrive_open resolved, the glue re-enters
    ;; handle() (emscripten4.cjs passes no arguments, the wasm64 glue the original
    ;; ones); restore our frame from the save area and redo the call.
    (if (i32.eq (global.get $async_state) (i32.const 2))
      (then
        (local.set $save (P.sub (P.load (global.get $async_data)) (P.const {ASYNC_SAVE})))
        (P.store (global.get $async_data) (local.get $save))
        (local.set $msg (P.load (local.get $save)))
        (local.set $env (P.load (P.add (local.get $save) (P.const 8))))
        (global.set $__stack_pointer (P.load (P.add (local.get $save) (P.const 16))))
        (local.set $r {self.imp('wd_open', wd_path, wd_mode)})
        (return (call $cmd_weavedrive (local.get $r)))))"""
            wd_dispatch = f"""
    (if (call $is (local.get $cmd) (local.get $n) {self.cstr_nonul('weavedrive')})
      (then
        (local.set $r {self.imp('wd_open', wd_path, wd_mode)})
        (if (i32.eq (global.get $async_state) (i32.const 1))
          (then
            ;; unwinding: save our frame into the asyncify buffer and return
            (local.set $save (P.load (global.get $async_data)))
            (if (P.gt_u (P.add (local.get $save) (P.const {ASYNC_SAVE}))
                        (P.load (P.add (global.get $async_data) (P.const {P}))))
              (then (unreachable)))
            (P.store (local.get $save) (local.get $msg))
            (P.store (P.add (local.get $save) (P.const 8)) (local.get $env))
            (P.store (P.add (local.get $save) (P.const 16)) (global.get $__stack_pointer))
            (P.store (global.get $async_data) (P.add (local.get $save) (P.const {ASYNC_SAVE})))
            (return (P.const 0))))
        (return (call $cmd_weavedrive (local.get $r)))))"""
        lines = [
            f"""
  ;; handle(msg, env): run the command named by the message's Data field
  (func $handle{self.export('handle')} (param $msg ptr) (param $env ptr) (result ptr)
    (local $cmd ptr) (local $n i32) (local $r i32) (local $save ptr){rewind}
    {self.gas(HANDLE_GAS)}
    (call $ob_release)
    (local.set $cmd (call $find (local.get $msg) (P.const {key_a}) (i32.const {key_n})))
    (if (P.ne (local.get $cmd) (P.const 0))
      (then
        (local.set $cmd (P.add (local.get $cmd) (P.const {key_n})))
        (block $done
          (loop $l
            (br_if $done (i32.eqz (i32.load8_u (P.add (local.get $cmd) (P.from_i32 (local.get $n))))))
            (br_if $done (i32.eq (i32.load8_u (P.add (local.get $cmd) (P.from_i32 (local.get $n)))) (i32.const 34)))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))
            (br $l)))))"""
        ]
        for literal, takes_arg in COMMANDS:
            fname = literal.strip().replace("-", "_")
            if literal == "weavedrive":
                if f.asyncify:
                    lines.append(wd_dispatch)
                    continue
            available = True
            if literal == "gas" and "gas_used" not in has:
                available = False
            if literal == "usegas " and not f.usegas:
                available = False
            if literal == "weavedrive" and not f.asyncify:
                available = False
            lit_a, lit_n = self.s.put(literal)
            if not available:
                # falls through to "unknown command" for this format
                continue
            if takes_arg:
                call = (
                    f"(call $cmd_{fname} (call $parse_u64 (P.add (local.get $cmd) (P.const {lit_n})) "
                    f"(i32.sub (local.get $n) (i32.const {lit_n}))))"
                )
                cond = f"(call $starts (local.get $cmd) (local.get $n) (P.const {lit_a}){note(literal)} (i32.const {lit_n}))"
            else:
                args = " (local.get $msg) (local.get $env)" if literal == "echo" else ""
                call = f"(call $cmd_{fname}{args})"
                cond = f"(call $is (local.get $cmd) (local.get $n) (P.const {lit_a}){note(literal)} (i32.const {lit_n}))"
            lines.append(f"    (if {cond} (then (return {call})))")
        lines.append("    (call $cmd_unknown (local.get $cmd) (local.get $n)))")
        lines.append(
            """
  ;; is: command p[0..n) equals the literal; starts: begins with it
  (func $is (param $p ptr) (param $n i32) (param $lit ptr) (param $ln i32) (result i32)
    (if (i32.ne (local.get $n) (local.get $ln)) (then (return (i32.const 0))))
    (call $memeq (local.get $p) (local.get $lit) (local.get $n)))
  (func $starts (param $p ptr) (param $n i32) (param $lit ptr) (param $ln i32) (result i32)
    (if (i32.lt_u (local.get $n) (local.get $ln)) (then (return (i32.const 0))))
    (call $memeq (local.get $p) (local.get $lit) (local.get $ln)))"""
        )
        return "\n".join(lines)

    def cstr_nonul(self, text: str) -> str:
        a, n = self.s.put(text)
        return f"(P.const {a}){note(text)} (i32.const {n})"

    # ---- assembly ---------------------------------------------------------
    def render(self) -> str:
        f = self.f
        body = "\n".join(
            [
                self.types_and_imports(),
                self.memory_and_globals(),
                self.runtime(),
                self.emscripten_runtime(),
                self.cmd_funcs(),
                self.handle(),
            ]
        )
        data = f"  (data (P.const {DATA_BASE}) {wat_bytes(bytes(self.s.blob))})"
        header = [
            ";; GENERATED by tests/modules/wat/gen.py -- do not edit; edit gen.py and rerun it.",
            f";; AO ABI probe module for Module-Format {f.format}",
            f";; pointers: {f.ptr}; memory pages {f.mem[0]}..{f.mem[1]}; stack {STACK_END:#x}..{STACK_BASE:#x};",
            f";; heap from {HEAP_BASE:#x}; imports: {len(f.imports)}; commands: see README.md",
            "(module",
        ]
        text = "\n".join(header) + "\n" + drop_dead_funcs(body) + "\n" + data + "\n)\n"
        text = "\n".join(ln.rstrip() for ln in text.split("\n") if ln.strip() or not ln)
        return expand(text, f.ptr)


def drop_dead_funcs(body: str) -> str:
    """Remove module-level funcs that are neither exported nor referenced.

    The template defines every helper once; a format that does not export,
    say, emscripten_stack_init must not carry it as dead code.
    """
    while True:
        forms = []  # (start, end, name) of "(func $name" forms at depth 1
        i = 0
        while True:
            j = body.find("\n  (func $", i)
            if j < 0:
                break
            start = j + 3
            depth, k = 0, start
            while True:
                ch = body[k]
                if ch == ";" and body.startswith(";;", k):
                    k = body.index("\n", k)
                    continue
                if ch == '"':
                    k = body.index('"', k + 1)
                elif ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            name = re.match(r"\(func (\$[\w.]+)", body[start:]).group(1)
            forms.append((start, k + 1, name))
            i = k
        removed = False
        for start, end, name in reversed(forms):
            head = body[start:end].split("\n", 1)[0]
            if "(export " in head:
                continue
            rest = body[:start] + body[end:]
            if re.search(re.escape(name) + r"(?![\w.])", rest):
                continue
            body = body[:start - 3] + body[end:]
            removed = True
            break
        if not removed:
            break
    # globals are one line each: drop the ones nothing reads or writes
    lines = body.split("\n")
    keep = []
    for ln in lines:
        m = re.match(r"\s*\(global (\$[\w.]+)", ln)
        if m and not re.search(re.escape(m.group(1)) + r"(?![\w.])", body.replace(ln, "")):
            continue
        keep.append(ln)
    return "\n".join(keep)


# --------------------------------------------------------------------------
# Pointer-width macro expansion
#   ptr            -> i32 | i64 (as a type)
#   (P.op ...)     -> (i32.op ...) | (i64.op ...)
#   (P.from_i32 x) -> x | (i64.extend_i32_u x)
#   (P.to_i32 x)   -> x | (i32.wrap_i64 x)
#   (P.from_i64 x) -> (i32.wrap_i64 x) | x
#   (P.to_i64 x)   -> (i64.extend_i32_u x) | x
#   (P.to_i64s x)  -> (i64.extend_i32_s x) | x
# --------------------------------------------------------------------------
MACROS = {
    "P.from_i32": ("{}", "(i64.extend_i32_u {})"),
    "P.to_i32": ("{}", "(i32.wrap_i64 {})"),
    "P.from_i64": ("(i32.wrap_i64 {})", "{}"),
    "P.to_i64": ("(i64.extend_i32_u {})", "{}"),
    "P.to_i64s": ("(i64.extend_i32_s {})", "{}"),
}


def expand(text: str, ptr: str) -> str:
    wide = ptr == "i64"

    def expand_macros(s: str) -> str:
        out = []
        i = 0
        while i < len(s):
            m = re.compile(r"\((P\.(?:from_i32|to_i32|from_i64|to_i64s|to_i64))\s").match(s, i)
            if not m:
                out.append(s[i])
                i += 1
                continue
            depth, j = 0, i
            while True:
                if s[j] == "(":
                    depth += 1
                elif s[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = expand_macros(s[m.end() : j].strip())
            out.append(MACROS[m.group(1)][1 if wide else 0].format(inner))
            i = j + 1
        return "".join(out)

    text = expand_macros(text)
    text = re.sub(r"(?<=[\s(])ptr(?=[\s)])", ptr, text)
    text = re.sub(r"\(P\.", "(" + ptr + ".", text)
    if "P." in re.sub(r";;.*", "", text):
        raise SystemExit("unexpanded P. macro left in output")
    return text


# --------------------------------------------------------------------------
# Message logs (msg/env shaped like the CU builds them, ao-cu.md section 2.7)
# --------------------------------------------------------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def fake_id(seed: str) -> str:
    return b64url(hashlib.sha256(seed.encode()).digest())  # 43 chars like an Arweave id


PROCESS_ID = fake_id("watmods-process")
MODULE_ID = fake_id("watmods-module")
OWNER = fake_id("watmods-owner")
SCHEDULER = fake_id("watmods-scheduler")


def env_json() -> dict:
    return {
        "Process": {
            "Id": PROCESS_ID,
            "Owner": OWNER,
            "Tags": [
                {"name": "Data-Protocol", "value": "ao"},
                {"name": "Variant", "value": "ao.TN.1"},
                {"name": "Type", "value": "Process"},
                {"name": "Module", "value": MODULE_ID},
                {"name": "Scheduler", "value": SCHEDULER},
            ],
        },
        "Module": {
            "Id": MODULE_ID,
            "Owner": OWNER,
            "Tags": [
                {"name": "Data-Protocol", "value": "ao"},
                {"name": "Variant", "value": "ao.TN.1"},
                {"name": "Type", "value": "Module"},
                {"name": "Input-Encoding", "value": "JSON-1"},
                {"name": "Output-Encoding", "value": "JSON-1"},
                {"name": "Memory-Limit", "value": "1-gb"},
                {"name": "Compute-Limit", "value": "9000000000000"},
            ],
        },
    }


def messages(cmds: list[str], log: str) -> list[str]:
    lines = []
    prev_assignment, prev_chain = b"", b""
    for nonce, cmd in enumerate(cmds, start=1):
        mid = fake_id(f"{log}-message-{nonce}")
        assignment = fake_id(f"{log}-assignment-{nonce}")
        chain = b64url(hashlib.sha256(prev_assignment + prev_chain).digest())
        prev_assignment, prev_chain = assignment.encode(), chain.encode()
        tags = [{"name": "Action", "value": "Probe"}, {"name": "Command", "value": cmd}]
        if cmd == "echo":
            tags.append({"name": "Unicode", "value": "h\u00e9llo w\u00f6rld \u2713 \U0001f600"})
        msg = {
            "Id": mid,
            "Signature": b64url(hashlib.sha512(mid.encode()).digest()),
            "Data": cmd,
            "Owner": OWNER,
            "Target": PROCESS_ID,
            "Anchor": "%032d" % nonce,
            "From": OWNER,
            "Tags": tags,
            "Epoch": 0,
            "Nonce": nonce,
            "Timestamp": 1700000000000 + 1000 * nonce,
            "Block-Height": 1500000 + nonce,
            "Hash-Chain": chain,
            "Cron": False,
            "Read-Only": False,
        }
        lines.append(json.dumps({"msg": msg, "env": env_json()}, ensure_ascii=False, separators=(",", ":")))
    return lines


LOGS = {
    "main": [
        "count",
        "argv",
        "ctors",
        "time",
        "tz",
        "env",
        "longjmp",
        "grow 4194304",
        "usegas 12345",
        "gas",
        "echo",
        "big 20000",
        "stdout",
        "fs",
        "fail",
        "error-field",
        "count",
        "time",
        "nonsense",
        "count",
    ],
    "loop": ["count", "loop", "count"],
    "recurse": ["count", "recurse", "count"],
    "unreachable": ["count", "unreachable", "count"],
    "oob": ["count", "oob", "count"],
    "bomb": ["count", "bomb", "count"],
    "abort": ["count", "abort", "count"],
    "system": ["count", "system", "count"],
    "weavedrive": ["count", "weavedrive", "count"],
}


def outputs() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for f in FORMATS:
        files[HERE / f"{f.name}.wat"] = Gen(f).render()
    for log, cmds in LOGS.items():
        files[HERE / "messages" / f"{log}.jsonl"] = "\n".join(messages(cmds, log)) + "\n"
    return files


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for path, text in outputs().items():
        old = path.read_text() if path.exists() else None
        if old != text:
            stale.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if check and stale:
        for p in stale:
            print(f"stale: {p.relative_to(HERE)}", file=sys.stderr)
        return 1
    if not check:
        print(f"wrote {len(stale)} file(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
