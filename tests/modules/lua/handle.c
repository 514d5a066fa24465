/*
 * C side of the ao-cu Lua test process (Lua 5.3.6, Emscripten).
 *
 * main() creates the Lua state, opens the standard libraries (and, built with -DAO_LLAMA, the `llama`
 * module of llama.c as the global Llama), registers the bundled Lua modules
 * (generated lua_bundle.h: json, process) in package.preload and runs the bundled main.lua, which defines
 * the Lua global `handle`. The exported handle(msg, env) calls that global under lua_pcall with the two
 * JSON strings and returns the JSON string it produced; on any failure it prints one line and returns "",
 * like the dev-cli wrapper (the loader's JSON.parse then rejects the empty string).
 */
#include <stdio.h>
#include <string.h>

#include <emscripten.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

#include "lua_bundle.h"

#ifdef AO_LLAMA
/* lua-llm.wasm: the `llama` module (llama.c), also as the global Llama, as AOS-Llama offers it. */
int luaopen_llama(lua_State *L);
#endif

static lua_State *L = NULL;

/* Registry key that keeps the last returned string alive until the next call. */
static const char RESULT_KEY[] = "ao-cu.handle.result";

static int load_bundled(lua_State *state, const struct lua_bundle_entry *entry) {
    return luaL_loadbufferx(state, (const char *)entry->source, entry->length, entry->chunkname, "t");
}

static int boot(void) {
    lua_State *state = luaL_newstate();
    if (state == NULL) {
        printf("ao-cu lua: cannot create the Lua state\n");
        return 1;
    }
    luaL_openlibs(state);
#ifdef AO_LLAMA
    luaL_requiref(state, "llama", luaopen_llama, 0);
    lua_setglobal(state, "Llama");
#endif

    lua_getglobal(state, "package");
    lua_getfield(state, -1, "preload");
    for (size_t i = 0; i < LUA_BUNDLE_MODULES; i++) {
        if (load_bundled(state, &lua_bundle_modules[i]) != LUA_OK) {
            printf("ao-cu lua: cannot load module %s: %s\n", lua_bundle_modules[i].name, lua_tostring(state, -1));
            lua_close(state);
            return 1;
        }
        lua_setfield(state, -2, lua_bundle_modules[i].name);
    }
    lua_settop(state, 0);

    if (load_bundled(state, &lua_bundle_main) != LUA_OK || lua_pcall(state, 0, 0, 0) != LUA_OK) {
        printf("ao-cu lua: boot failed: %s\n", lua_tostring(state, -1));
        lua_close(state);
        return 1;
    }
    lua_settop(state, 0);
    L = state;
    return 0;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    if (L != NULL) {
        return 0;
    }
    return boot();
}

EMSCRIPTEN_KEEPALIVE
const char *handle(const char *msg, const char *env) {
    if (L == NULL && boot() != 0) {
        return "";
    }
    lua_settop(L, 0);
    if (lua_getglobal(L, "handle") != LUA_TFUNCTION) {
        printf("ao-cu lua: the global handle is not a function\n");
        lua_settop(L, 0);
        return "";
    }
    lua_pushstring(L, msg);
    lua_pushstring(L, env);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        const char *err = lua_tostring(L, -1);
        printf("ao-cu lua: handle failed: %s\n", err ? err : "(error object is not a string)");
        lua_settop(L, 0);
        return "";
    }
    if (lua_type(L, -1) != LUA_TSTRING) {
        printf("ao-cu lua: handle returned a %s, not a string\n", luaL_typename(L, -1));
        lua_settop(L, 0);
        return "";
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, RESULT_KEY);
    const char *out = lua_tostring(L, -1);
    lua_settop(L, 0);
    return out;
}
