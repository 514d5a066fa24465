/*
 * The `llama` Lua module of ao-cu's Lua language-model process (lua-llm.wasm): AOS-Llama's Lua face
 * (Llama.load / setPrompt / add / run / next / info) over the ao_tensor model_* imports
 * (docs/tensor-api.md, "Models"), so aos code written for AOS-Llama runs on a model the node holds.
 * Greedy decoding (the lowest id of the largest logit). The KV cache, the tokens and the position live
 * in this process's memory, so checkpoints carry them.
 *
 *   Llama.load(id [, context])  the model in data item `id`; `context` KV positions (default 512)
 *   Llama.setPrompt(text)       starts over: runs `text` (special tokens such as <|im_start|> recognised)
 *   Llama.chat(text)            starts over with the model's chat template around one user message
 *   Llama.add(text)             runs more text after what is in the context
 *   Llama.next()                chooses and runs one token; its text, or nil at the end-of-turn token
 *   Llama.run(count)            up to `count` tokens' text (stops early at the end-of-turn token)
 *   Llama.info()                a description; Llama.position() the tokens in the context
 * Errors (no model loaded, the context full) are Lua errors; what the host refuses traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lua.h"

#define AO_TENSOR(name) __attribute__((import_module("ao_tensor"), import_name(#name)))
AO_TENSOR(model_open) int32_t ao_model_open(const char *id, uint32_t id_len);
AO_TENSOR(model_info) void ao_model_info(int32_t model, uint32_t *out);
AO_TENSOR(model_chat) int32_t ao_model_chat(int32_t model, const char *text, uint32_t len, uint32_t *out, uint32_t cap);
AO_TENSOR(model_tokenize) int32_t ao_model_tokenize(int32_t model, const char *text, uint32_t len, int32_t special, uint32_t *out, uint32_t cap);
AO_TENSOR(model_detokenize) int32_t ao_model_detokenize(int32_t model, const uint32_t *ids, uint32_t n, char *out, uint32_t cap);
AO_TENSOR(model_forward) void ao_model_forward(int32_t model, int32_t *kv, uint32_t capacity, uint32_t pos, uint32_t token, int32_t *logits);
AO_TENSOR(model_forward_batch) void ao_model_forward_batch(int32_t model, int32_t *kv, uint32_t capacity, uint32_t pos, const uint32_t *tokens, uint32_t n, int32_t *logits);

enum { INFO_VOCAB, INFO_CONTEXT, INFO_LAYERS, INFO_EMBD, INFO_KV_BYTES, INFO_BOS, INFO_EOS, INFO_WORDS = 8 };

static char model_id[257];
static uint32_t info[INFO_WORDS];
static uint32_t capacity = 0;
static int32_t *kv = NULL;
static int32_t *logits = NULL;
static uint32_t position = 0; /* tokens in the KV cache; logits are those after the last one */

/* The handle of the loaded model in this message (handles end with their message). */
static int32_t model(lua_State *L) {
    if (!model_id[0]) luaL_error(L, "Llama: no model loaded (Llama.load(id))");
    return ao_model_open(model_id, (uint32_t)strlen(model_id));
}

static int l_load(lua_State *L) {
    size_t len;
    const char *id = luaL_checklstring(L, 1, &len);
    lua_Integer ctx = luaL_optinteger(L, 2, 512);
    if (len == 0 || len >= sizeof model_id) return luaL_error(L, "Llama.load: the id must be 1 to 256 bytes");
    int32_t m = ao_model_open(id, (uint32_t)len);
    ao_model_info(m, info);
    if (ctx < 1 || (uint64_t)ctx > info[INFO_CONTEXT]) return luaL_error(L, "Llama.load: context outside [1, %d]", (int)info[INFO_CONTEXT]);
    free(kv);
    free(logits);
    kv = malloc((size_t)ctx * info[INFO_KV_BYTES]);
    logits = malloc((size_t)info[INFO_VOCAB] * 4);
    if (!kv || !logits) {
        model_id[0] = 0;
        capacity = 0;
        return luaL_error(L, "Llama.load: out of memory for the KV cache");
    }
    memcpy(model_id, id, len);
    model_id[len] = 0;
    capacity = (uint32_t)ctx;
    position = 0;
    return 0;
}

/* Runs `n` ids after what is in the context. */
static void feed(lua_State *L, int32_t m, const uint32_t *ids, uint32_t n) {
    if ((uint64_t)position + n > capacity) luaL_error(L, "Llama: the context of %d tokens is full", (int)capacity);
    if (n == 0) return;
    if (n == 1) ao_model_forward(m, kv, capacity, position, ids[0], logits);
    else ao_model_forward_batch(m, kv, capacity, position, ids, n, logits); /* a prompt in one pass */
    position += n;
}

/* Tokenises `text` (chat template or plain) and runs it. */
static int run_text(lua_State *L, int chat, int reset) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    int32_t m = model(L);
    if (reset) position = 0;
    uint32_t room = capacity - position;
    uint32_t *ids = malloc(((size_t)room + 1) * 4);
    if (!ids) return luaL_error(L, "Llama: out of memory");
    int32_t n = chat ? ao_model_chat(m, text, (uint32_t)len, ids, room + 1)
                     : ao_model_tokenize(m, text, (uint32_t)len, 1, ids, room + 1);
    if (n < 0 || (uint32_t)n > room) {
        free(ids);
        return luaL_error(L, "Llama: %d tokens do not fit the %d left in the context", (int)n, (int)room);
    }
    feed(L, m, ids, (uint32_t)n);
    free(ids);
    return 0;
}

static int l_set_prompt(lua_State *L) { return run_text(L, 0, 1); }
static int l_chat(lua_State *L) { return run_text(L, 1, 1); }
static int l_add(lua_State *L) { return run_text(L, 0, 0); }

/* Chooses the next token, runs it and pushes its text; pushes nil at the end-of-turn token. */
static int next_token(lua_State *L, int32_t m) {
    if (position == 0) return luaL_error(L, "Llama: set a prompt first (Llama.setPrompt or Llama.chat)");
    uint32_t best = 0;
    for (uint32_t i = 1; i < info[INFO_VOCAB]; i++)
        if (logits[i] > logits[best]) best = i;
    if (best == info[INFO_EOS]) {
        lua_pushnil(L);
        return 1;
    }
    feed(L, m, &best, 1);
    char piece[256];
    int32_t n = ao_model_detokenize(m, &best, 1, piece, sizeof piece);
    lua_pushlstring(L, piece, (size_t)(n < (int32_t)sizeof piece ? n : (int32_t)sizeof piece));
    return 1;
}

static int l_next(lua_State *L) { return next_token(L, model(L)); }

static int l_run(lua_State *L) {
    lua_Integer count = luaL_checkinteger(L, 1);
    int32_t m = model(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (lua_Integer i = 0; i < count; i++) {
        next_token(L, m);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return 1;
}

static int l_info(lua_State *L) {
    lua_pushstring(L, "ao-cu's Llama: a language model the node holds (ao_tensor.model_*), in integers, greedy");
    return 1;
}

static int l_position(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)position);
    return 1;
}

int luaopen_llama(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"load", l_load}, {"setPrompt", l_set_prompt}, {"chat", l_chat}, {"add", l_add}, {"next", l_next},
        {"run", l_run},   {"info", l_info},            {"position", l_position}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
