/*
 * The WeaveDrive probe: a wasm32-unknown-emscripten4 process without libc that reads WeaveDrive files
 * through the same import calls aos makes (aolibc's fopen/fread/fclose over
 * __asyncjs__weavedrive_{open,read,close}, Lua's file:seek over fd_seek), so ao-cu and the reference
 * loader with @permaweb/weavedrive can be compared on one module. Built by tests/modules/build.sh with
 * clang (wasm32, no libc) and `wasm-opt --asyncify` for the three imports.
 *
 * handle(msg, env) runs the command in the message's Data (ASCII, no escapes):
 *   get PATH                 aos's drive.getData: open, seek end, tell, read that many bytes, close
 *   read PATH N1 [N2 ...]    open, then sequential reads of N1, N2, ... bytes, close
 *   seekread PATH OFF N      open, seek to OFF, read N bytes, close
 *   open PATH                open only (the descriptor stays open), answers the descriptor
 * and answers a line per step: what each call returned, and for reads the FNV-1a 64 hash and the first
 * 16 bytes (hex) of what was read.
 */
typedef unsigned int u32;
typedef unsigned long long u64;
typedef unsigned long size_t;

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define WASI(name) __attribute__((import_module("wasi_snapshot_preview1"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(__asyncjs__weavedrive_open) int wd_open(const char *path, const char *mode);
IMPORT(__asyncjs__weavedrive_read) int wd_read(int fd, void *dst, size_t len);
IMPORT(__asyncjs__weavedrive_close) int wd_close(int fd);
IMPORT(emscripten_resize_heap) int resize_heap(size_t size);
WASI(fd_seek) int fd_seek(int fd, int off_lo, int off_hi, int whence, u64 *out);

extern char __heap_base;
extern char __data_end;

/* A first-fit allocator: the glue mallocs (and frees) its 40 MiB Asyncify area for every call. */
typedef struct Block { size_t size; struct Block *next; int free; int pad; } Block;
static Block *blocks;
static char *brk;

static int grow_to(char *end) {
  size_t have = __builtin_wasm_memory_size(0) * 65536;
  if ((size_t)end <= have) return 1;
  return resize_heap((size_t)end);
}

EXPORT(malloc) void *malloc(size_t n) {
  n = (n + 15) & ~(size_t)15;
  for (Block *b = blocks; b; b = b->next)
    if (b->free && b->size >= n) { b->free = 0; return b + 1; }
  if (!brk) brk = (char *)(((size_t)&__heap_base + 15) & ~(size_t)15);
  char *end = brk + sizeof(Block) + n;
  if (!grow_to(end)) return 0;
  Block *b = (Block *)brk;
  b->size = n; b->free = 0; b->next = blocks; blocks = b;
  brk = end;
  return b + 1;
}

EXPORT(free) void free(void *p) {
  if (p) ((Block *)p - 1)->free = 1;
}

/* The stack the glue knows about: between the end of data and the heap base. */
EXPORT(emscripten_stack_init) void stack_init(void) {}
EXPORT(emscripten_stack_get_base) size_t stack_base(void) { return (size_t)&__heap_base; }
EXPORT(emscripten_stack_get_end) size_t stack_end(void) { return ((size_t)&__data_end + 15) & ~(size_t)15; }
EXPORT(emscripten_stack_get_free) size_t stack_free(void) { return 0; }
EXPORT(main) int probe_main(int argc, int argv) { (void)argc; (void)argv; return 0; }
EXPORT(fflush) int probe_fflush(int stream) { (void)stream; return 0; }

/* Output text. */
static char out[8192];
static size_t out_len;
static void put(const char *s) { while (*s && out_len < sizeof out - 64) out[out_len++] = *s++; }
static void put_int(long long v) {
  char tmp[24]; int i = 0;
  if (v < 0) { put("-"); v = -v; }
  do { tmp[i++] = (char)('0' + v % 10); v /= 10; } while (v);
  while (i) { char c[2] = {tmp[--i], 0}; put(c); }
}
static void put_hex(u64 v, int digits) {
  static const char h[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; i--) { char c[2] = {h[(v >> (4 * i)) & 15], 0}; put(c); }
}

static u64 fnv(const unsigned char *p, size_t n) {
  u64 h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 0x100000001b3ULL; }
  return h;
}

static void report_read(const char *what, int got, const unsigned char *buf, size_t n) {
  put(what); put("="); put_int(got);
  put(" fnv="); put_hex(fnv(buf, n), 16);
  put(" head=");
  for (size_t i = 0; i < n && i < 16; i++) put_hex(buf[i], 2);
  put("\\n");
}

static long long seek(int fd, long long off, int whence) {
  u64 pos = 0;
  int err = fd_seek(fd, (int)(off & 0xffffffff), (int)(off >> 32), whence, &pos);
  return err ? -err : (long long)pos;
}

/* Command parsing: words of the Data field. */
static const char *cursor;
static int word(char *dst, int cap) {
  while (*cursor == ' ') cursor++;
  int n = 0;
  while (*cursor && *cursor != ' ' && *cursor != '"' && n < cap - 1) dst[n++] = *cursor++;
  dst[n] = 0;
  return n;
}
static long long number(void) {
  char w[24]; long long v = 0;
  word(w, sizeof w);
  for (char *p = w; *p >= '0' && *p <= '9'; p++) v = v * 10 + (*p - '0');
  return v;
}
static int same(const char *a, const char *b) { while (*a && *a == *b) { a++; b++; } return *a == *b; }

static const char *find(const char *s, const char *needle) {
  for (; *s; s++) {
    const char *a = s, *b = needle;
    while (*b && *a == *b) { a++; b++; }
    if (!*b) return a;
  }
  return 0;
}

static void run(const char *data) {
  char cmd[16], path[128];
  cursor = data;
  word(cmd, sizeof cmd);
  word(path, sizeof path);
  int fd = wd_open(path, "r");
  put("open="); put_int(fd); put("\\n");
  if (!fd || same(cmd, "open")) return;
  if (same(cmd, "get")) {
    long long end = seek(fd, 0, 2);
    long long tell = seek(fd, 0, 1);
    put("end="); put_int(end); put(" tell="); put_int(tell); put("\\n");
    unsigned char *buf = malloc(tell > 0 ? (size_t)tell : 1);
    int got = wd_read(fd, buf, (size_t)tell);
    report_read("read", got, buf, tell > 0 ? (size_t)tell : 0);
    free(buf);
  } else if (same(cmd, "read") || same(cmd, "seekread")) {
    if (same(cmd, "seekread")) { long long at = seek(fd, number(), 0); put("seek="); put_int(at); put("\\n"); }
    for (;;) {
      while (*cursor == ' ') cursor++;
      if (*cursor < '0' || *cursor > '9') break;
      long long n = number();
      unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
      for (long long i = 0; i < n; i++) buf[i] = 0;
      int got = wd_read(fd, buf, (size_t)n);
      report_read("read", got, buf, (size_t)n);
      free(buf);
    }
    put("tell="); put_int(seek(fd, 0, 1)); put("\\n");
  }
  put("close="); put_int(wd_close(fd)); put("\\n");
}

EXPORT(handle) const char *handle(const char *msg, const char *env) {
  (void)env;
  out_len = 0;
  put("{\"ok\":true,\"response\":{\"Output\":\"");
  const char *data = find(msg, "\"Data\":\"");
  if (data) run(data); else put("no Data");
  put("\",\"Messages\":[],\"Spawns\":[],\"Assignments\":[]}}");
  out[out_len] = 0;
  return out;
}
