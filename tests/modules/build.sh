#!/usr/bin/env bash
# Builds the ao-cu test modules from source into tests/modules/build/ (gitignored):
#   lua-process.wasm          our Lua 5.3.6 test process (tests/modules/lua/), format wasm32-unknown-emscripten2
#   lua-process-metered.wasm  the same sources built without SIMD (mvp/lua-process-mvp.wasm), pre-metered with
#                             @permaweb/wasm-metering 0.2.2 (i32 metering.usegas), which cannot parse SIMD
#   lua-llm.wasm              the same process with the `llama` Lua module (llama.c) over ao_tensor.model_*
#   tensor-infer.wasm, llm-generate.wasm, weavedrive-probe.wasm: by tensor/build.sh, llm/build.sh and drive/build.sh (called at the end)
# Needs: Debian's emscripten 3.1.6 (emcc), wabt (wasm-objdump), cargo (to fetch lua-src from crates.io),
# node + npm (the metering step uses tests/oracle's pinned packages; `npm ci` runs when they are missing).
# Incremental: each step is skipped when its outputs are newer than its inputs. FORCE=1 rebuilds everything.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
src="$here/lua"
out="$here/build"
obj="$out/obj"
mkdir -p "$out" "$obj"

export NODE_PATH="${NODE_PATH:-/usr/share/nodejs}"
EMCC="${EMCC:-emcc}"
FORCE="${FORCE:-0}"

log() { echo "build.sh: $*" >&2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

for tool in "$EMCC" emar wasm-objdump cargo node npm od; do
  command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done
emver="$("$EMCC" --version | sed -n 1p)"
case "$emver" in
  *" 3.1.6 "*|*" 3.1.6") ;;
  *) die "expected emscripten 3.1.6 (Debian's emcc), found: $emver" ;;
esac

# up_to_date OUTPUT INPUT... : true when OUTPUT exists and is newer than every INPUT.
up_to_date() {
  local target="$1"; shift
  [ "$FORCE" = 1 ] && return 1
  [ -e "$target" ] || return 1
  local f
  for f in "$@"; do
    [ "$f" -nt "$target" ] && return 1
  done
  return 0
}

# --- 1. Lua 5.3.6 sources from the lua-src crate (=551.1.0) on crates.io --------------------------------
LUA_SRC_VERSION=551.1.0
fetch_dir="$out/lua-src-fetch"
mkdir -p "$fetch_dir/src"
cat > "$fetch_dir/Cargo.toml.new" <<EOF
[package]
name = "ao-cu-fetch-lua-src"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "src/lib.rs"

[dependencies]
lua-src = "=$LUA_SRC_VERSION"

[workspace]
EOF
if ! cmp -s "$fetch_dir/Cargo.toml.new" "$fetch_dir/Cargo.toml" 2>/dev/null; then
  mv "$fetch_dir/Cargo.toml.new" "$fetch_dir/Cargo.toml"
else
  rm "$fetch_dir/Cargo.toml.new"
fi
: > "$fetch_dir/src/lib.rs.tmp"
cmp -s "$fetch_dir/src/lib.rs.tmp" "$fetch_dir/src/lib.rs" 2>/dev/null || cp "$fetch_dir/src/lib.rs.tmp" "$fetch_dir/src/lib.rs"
rm -f "$fetch_dir/src/lib.rs.tmp"
# First try without fetching: on a fresh machine the metadata is empty and this yields nothing (quietly).
lua_crate_dir="$(cd "$fetch_dir" && cargo metadata --format-version 1 --locked 2>/dev/null \
  | node -e 'const m=JSON.parse(require("fs").readFileSync(0,"utf8"));const p=m.packages.find(p=>p.name==="lua-src");if(p)process.stdout.write(require("path").dirname(p.manifest_path))' 2>/dev/null || true)"
if [ -z "$lua_crate_dir" ] || [ ! -d "$lua_crate_dir/lua-5.3.6" ]; then
  log "fetching lua-src $LUA_SRC_VERSION from crates.io"
  (cd "$fetch_dir" && cargo fetch --quiet) || die "cargo fetch of lua-src $LUA_SRC_VERSION failed"
  lua_crate_dir="$(cd "$fetch_dir" && cargo metadata --format-version 1 --locked \
    | node -e 'const m=JSON.parse(require("fs").readFileSync(0,"utf8"));const p=m.packages.find(p=>p.name==="lua-src");if(!p)process.exit(1);process.stdout.write(require("path").dirname(p.manifest_path))')" \
    || die "cannot locate lua-src in cargo metadata"
fi
lua_dir="$lua_crate_dir/lua-5.3.6"
[ -f "$lua_dir/lua.h" ] || die "no Lua sources at $lua_dir"
grep -q '#define LUA_VERSION_RELEASE[[:space:]]*"6"' "$lua_dir/lua.h" || die "$lua_dir is not Lua 5.3.6"

# --- 2. liblua.a per variant (as `make generic` in the dev-cli container: -DLUA_COMPAT_5_2, no POSIX) ----
# Variants: simd (-msimd128, like the dev-cli) for lua-process.wasm, and mvp (no SIMD) as the input of the
# metering step, because @permaweb/wasm-metering 0.2.2 cannot parse SIMD opcodes.
BASE_CFLAGS=(-O3 -DLUA_COMPAT_5_2 -Wall -Wno-string-plus-int)
lua_sources=()
for f in "$lua_dir"/*.c; do
  case "$(basename "$f")" in lua.c|luac.c) continue ;; esac
  lua_sources+=("$f")
done
# build_liblua VARIANT CFLAGS... : compiles the Lua core and libraries into $out/VARIANT/liblua.a
build_liblua() {
  local variant="$1"; shift
  local cflags=("$@")
  local dir="$out/$variant" objdir="$out/$variant/obj"
  mkdir -p "$objdir"
  local lib="$dir/liblua.a" stamp="$dir/liblua.stamp"
  # the stamp holds compiler, flags and source folder: rebuild when any of them changes
  local stamp_text="$emver ${cflags[*]} $lua_dir"
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$stamp_text" ]; then rm -f "$lib"; fi
  if up_to_date "$lib" "${lua_sources[@]}" "$lua_dir"/*.h; then
    log "$variant/liblua.a up to date"
    return
  fi
  log "compiling Lua 5.3.6 ($variant, ${#lua_sources[@]} files)"
  rm -f "$objdir"/*.o "$lib"
  local pids=() jobs_max="${JOBS:-2}" f p
  for f in "${lua_sources[@]}"; do
    "$EMCC" "${cflags[@]}" -c "$f" -o "$objdir/$(basename "${f%.c}").o" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs_max" ]; then
      wait "${pids[0]}" || die "compiling Lua failed"
      pids=("${pids[@]:1}")
    fi
  done
  for p in "${pids[@]}"; do wait "$p" || die "compiling Lua failed"; done
  emar rcs "$lib" "$objdir"/*.o
  echo "$stamp_text" > "$stamp"
}
build_liblua simd "${BASE_CFLAGS[@]}" -msimd128
build_liblua mvp "${BASE_CFLAGS[@]}"

# --- 3. lua_bundle.h: our Lua sources as C byte arrays ------------------------------------------------
bundle="$out/lua_bundle.h"
lua_files=("$src/json.lua" "$src/process.lua" "$src/main.lua")
if up_to_date "$bundle" "${lua_files[@]}" "$here/build.sh"; then
  log "lua_bundle.h up to date"
else
  log "generating lua_bundle.h"
  {
    echo "/* Generated by tests/modules/build.sh from the .lua files in tests/modules/lua. Do not edit. */"
    echo "#include <stddef.h>"
    echo "struct lua_bundle_entry { const char *name; const char *chunkname; const unsigned char *source; size_t length; };"
    for f in "${lua_files[@]}"; do
      name="$(basename "${f%.lua}")"
      echo "static const unsigned char lua_source_${name}[] = {"
      od -An -v -tx1 "$f" | sed -e 's/[[:space:]]*\([0-9a-f][0-9a-f]\)/0x\1,/g'
      echo "};"
    done
    echo "static const struct lua_bundle_entry lua_bundle_modules[] = {"
    echo "  {\"json\", \"=json.lua\", lua_source_json, sizeof lua_source_json},"
    echo "  {\"process\", \"=process.lua\", lua_source_process, sizeof lua_source_process},"
    echo "};"
    echo "#define LUA_BUNDLE_MODULES (sizeof lua_bundle_modules / sizeof lua_bundle_modules[0])"
    echo "static const struct lua_bundle_entry lua_bundle_main = {\"main\", \"=main.lua\", lua_source_main, sizeof lua_source_main};"
  } > "$bundle.tmp"
  mv "$bundle.tmp" "$bundle"
fi

# --- 4. link -----------------------------------------------------------------------------------------
LDFLAGS=(
  -O3
  -s WASM=1
  -s ALLOW_MEMORY_GROWTH=1
  -s INITIAL_MEMORY=16777216
  -s MAXIMUM_MEMORY=1073741824
  -s TOTAL_STACK=5242880
  -s SUPPORT_LONGJMP=1
  -s FORCE_FILESYSTEM=1
  -s MODULARIZE=1
  -s DETERMINISTIC=1
  -s NODERAWFS=0
  -s ASSERTIONS=1
  -s ERROR_ON_UNDEFINED_SYMBOLS=0
  -s EXPORTED_FUNCTIONS='["_malloc","_main","_handle","_fflush"]'
  -s EXPORTED_RUNTIME_METHODS='["cwrap"]'
  -lm
)
# _fflush is exported like in the emscripten2 fixtures: the glue calls it after main() returns (without
# it, that call aborts inside a try/catch and sets the glue's ABORT flag).
# ASSERTIONS=1 (as in the dev-cli) also keeps import names unminified (-O3 alone minifies them to a.a, a.b,
# ... which only the JS emcc emits alongside could satisfy). ERROR_ON_UNDEFINED_SYMBOLS=0 lets compat.c
# import glue functions that 3.1.6's own JS library lacks (_emscripten_date_now, ...); step 5 checks that
# every import is one the emscripten2 glue provides.
# link_process VARIANT OUTPUT CFLAGS...
link_process() {
  local variant="$1" wasm="$2"; shift 2
  local cflags=("$@")
  local lib="$out/$variant/liblua.a" js
  js="${wasm%.wasm}.js"
  if up_to_date "$wasm" "$src/handle.c" "$src/compat.c" "$bundle" "$lib" "$here/build.sh"; then
    log "$(basename "$wasm") up to date"
    return
  fi
  log "linking $(basename "$wasm")"
  rm -f "$js" "$wasm"
  "$EMCC" "${cflags[@]}" -I"$lua_dir" -I"$out" "$src/handle.c" "$src/compat.c" "$lib" "${LDFLAGS[@]}" -o "$js"
  [ -s "$wasm" ] || die "emcc produced no $wasm"
}
wasm="$out/lua-process.wasm"
mvp_wasm="$out/mvp/lua-process-mvp.wasm"
link_process simd "$wasm" "${BASE_CFLAGS[@]}" -msimd128
link_process mvp "$mvp_wasm" "${BASE_CFLAGS[@]}"

# lua-llm.wasm: the same process with the `llama` module (llama.c, AOS-Llama's Lua face over the
# ao_tensor.model_* imports, docs/tensor-api.md). Not for the reference loader, which has no ao_tensor.
llm_wasm="$out/lua-llm.wasm"
if up_to_date "$llm_wasm" "$src/handle.c" "$src/compat.c" "$src/llama.c" "$bundle" "$out/simd/liblua.a" "$here/build.sh"; then
  log "lua-llm.wasm up to date"
else
  log "linking lua-llm.wasm"
  rm -f "${llm_wasm%.wasm}.js" "$llm_wasm"
  "$EMCC" "${BASE_CFLAGS[@]}" -msimd128 -DAO_LLAMA -I"$lua_dir" -I"$out" "$src/handle.c" "$src/compat.c" "$src/llama.c" \
    "$out/simd/liblua.a" "${LDFLAGS[@]}" -o "${llm_wasm%.wasm}.js"
  [ -s "$llm_wasm" ] || die "emcc produced no $llm_wasm"
  llm_imports="$(wasm-objdump -x -j Import "$llm_wasm" | sed -n 's/.*<- \([^ ]*\)$/\1/p')"
  for name in model_open model_info model_chat model_tokenize model_detokenize model_forward model_forward_batch; do
    grep -qx "ao_tensor.$name" <<<"$llm_imports" || die "$llm_wasm does not import ao_tensor.$name"
  done
fi

# --- 5. check the import set against what the emscripten2 glue of @permaweb/ao-loader provides ----------
# (the glue passes one object as both `env` and `wasi_snapshot_preview1`; `metering.usegas` is always given)
EMSCRIPTEN2_IMPORTS=" __assert_fail __syscall_chmod __syscall_dup3 __syscall_faccessat __syscall_fchmod
  __syscall_fchown32 __syscall_fcntl64 __syscall_fstat64 __syscall_ftruncate64 __syscall_getcwd __syscall_ioctl
  __syscall_lstat64 __syscall_mkdirat __syscall_newfstatat __syscall_openat __syscall_readlinkat
  __syscall_renameat __syscall_rmdir __syscall_stat64 __syscall_unlinkat __syscall_utimensat _dlinit _dlopen_js
  _dlsym_js _emscripten_date_now _emscripten_get_now_is_monotonic _emscripten_throw_longjmp _gmtime_js
  _localtime_js _mktime_js _mmap_js _munmap_js _tzset_js abort emscripten_get_heap_max emscripten_get_now
  emscripten_memcpy_big emscripten_resize_heap environ_get environ_sizes_get exit fd_close fd_fdstat_get fd_read
  fd_seek fd_sync fd_write getTempRet0 invoke_vii setTempRet0 strftime system "
EMSCRIPTEN2_IMPORTS="$(echo $EMSCRIPTEN2_IMPORTS)"
check_imports() {
  local file="$1" bad=0 line mod name
  while read -r line; do
    mod="${line%%.*}"; name="${line#*.}"
    case "$mod" in
      env|wasi_snapshot_preview1)
        case " $EMSCRIPTEN2_IMPORTS " in *" $name "*) ;; *) echo "build.sh: import $mod.$name is not provided by the emscripten2 glue" >&2; bad=1 ;; esac ;;
      metering)
        [ "$name" = usegas ] || { echo "build.sh: unknown import $mod.$name" >&2; bad=1; } ;;
      *) echo "build.sh: import from unknown module $mod.$name" >&2; bad=1 ;;
    esac
  done < <(wasm-objdump -x -j Import "$file" | sed -n 's/.*<- \([^ ]*\)$/\1/p')
  [ "$bad" = 0 ] || die "$file imports functions the wasm32-unknown-emscripten2 glue lacks"
  local exports
  exports="$(wasm-objdump -x -j Export "$file")"
  for name in memory handle main malloc __indirect_function_table stackSave stackRestore stackAlloc setThrew; do
    grep -q "\"$name\"" <<<"$exports" || die "$file does not export $name (needed by the emscripten2 glue)"
  done
}
check_imports "$wasm"
check_imports "$mvp_wasm"
log "imports of lua-process.wasm and mvp/lua-process-mvp.wasm: OK for wasm32-unknown-emscripten2"

# --- 6. lua-process-metered.wasm: pre-metered like dev-cli's apply-metering.cjs ----------------------------
metered="$out/lua-process-metered.wasm"
oracle="$repo/tests/oracle"
if up_to_date "$metered" "$mvp_wasm" "$oracle/meter.cjs" "$oracle/package-lock.json" "$here/build.sh"; then
  log "lua-process-metered.wasm up to date"
else
  if [ ! -d "$oracle/node_modules/@permaweb/wasm-metering" ]; then
    log "installing tests/oracle npm packages (npm ci)"
    npm ci --prefix "$oracle" --no-audit --no-fund >&2
  fi
  log "metering mvp/lua-process-mvp.wasm"
  node "$oracle/meter.cjs" "$mvp_wasm" "$metered.tmp"
  mv "$metered.tmp" "$metered"
  check_imports "$metered"
  metered_imports="$(wasm-objdump -x -j Import "$metered")"
  grep -q '<- metering.usegas$' <<<"$metered_imports" || die "$metered has no metering.usegas import"
fi
log "done: $wasm $metered"
"$here/tensor/build.sh"
"$here/llm/build.sh"
"$here/drive/build.sh"
