/*
 * Libc functions that Debian's emscripten 3.1.6 implements as JavaScript imports which the
 * wasm32-unknown-emscripten2 glue of @permaweb/ao-loader does not provide (`time`, `clock`, `difftime`,
 * `__clock_gettime`, `__syscall_open`, `__syscall_unlink`, `__syscall_rename`). Defining them here keeps
 * them inside the module, written on top of imports the glue does provide, the way later emscripten
 * versions (the ones that produced emscripten2-format modules) implement them in C:
 *   time/clock/clock_gettime(CLOCK_REALTIME) -> _emscripten_date_now() (milliseconds; 0 in that glue)
 *   clock_gettime(CLOCK_MONOTONIC)           -> emscripten_get_now() when _emscripten_get_now_is_monotonic()
 *   open/unlink/rename                       -> __syscall_openat/unlinkat/renameat(AT_FDCWD, ...)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <time.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))

IMPORT(_emscripten_date_now) double ao_date_now(void);
IMPORT(_emscripten_get_now_is_monotonic) int ao_now_is_monotonic(void);
IMPORT(emscripten_get_now) double ao_get_now(void);
IMPORT(__syscall_openat) long ao_syscall_openat(long dirfd, long path, long flags, long varargs);
IMPORT(__syscall_unlinkat) long ao_syscall_unlinkat(long dirfd, long path, long flags);
IMPORT(__syscall_renameat) long ao_syscall_renameat(long olddirfd, long oldpath, long newdirfd, long newpath);

time_t time(time_t *t) {
    time_t now = (time_t)(ao_date_now() / 1000);
    if (t) {
        *t = now;
    }
    return now;
}

static double clock_start_ms = 0;

clock_t clock(void) {
    if (clock_start_ms == 0) {
        clock_start_ms = ao_date_now();
    }
    return (clock_t)((ao_date_now() - clock_start_ms) * (CLOCKS_PER_SEC / 1000));
}

double difftime(time_t t1, time_t t0) {
    return (double)t1 - (double)t0;
}

int __clock_gettime(clockid_t clk, struct timespec *ts) {
    double now_ms;
    if (clk == CLOCK_REALTIME) {
        now_ms = ao_date_now();
    } else if ((clk == CLOCK_MONOTONIC || clk == CLOCK_MONOTONIC_RAW) && ao_now_is_monotonic()) {
        now_ms = ao_get_now();
    } else {
        errno = EINVAL;
        return -1;
    }
    long long now_s = (long long)(now_ms / 1000);
    ts->tv_sec = (time_t)now_s;
    ts->tv_nsec = (long)((now_ms - (double)now_s * 1000) * 1000 * 1000);
    return 0;
}

int clock_gettime(clockid_t clk, struct timespec *ts) {
    return __clock_gettime(clk, ts);
}

/* musl's syscall wrappers: variadic, the optional mode travels in the varargs buffer. */
long __syscall_open(long path, long flags, ...) {
    va_list ap;
    va_start(ap, flags);
    long ret = ao_syscall_openat(AT_FDCWD, path, flags, (long)(intptr_t)ap);
    va_end(ap);
    return ret;
}

long __syscall_unlink(long path) {
    return ao_syscall_unlinkat(AT_FDCWD, path, 0);
}

long __syscall_rename(long old_path, long new_path) {
    return ao_syscall_renameat(AT_FDCWD, old_path, AT_FDCWD, new_path);
}
