/*
 * ao-cu's language-model test process (C, Emscripten, format wasm32-unknown-emscripten2): greedy text
 * generation with a model the node holds, through the ao_tensor model_* imports (docs/tensor-api.md,
 * "Models"). The KV cache, the tokens and the generation's position live in this process's memory, so a
 * checkpoint taken between messages carries a generation in progress.
 *
 * handle(msg, env) reads the message's tags and Data:
 *   Action "Generate": Data is the user's prompt; tags Model (the id of the data item holding the GGUF),
 *     Max-Tokens (default 16), Context (KV positions to reserve, default 512, at most the model's).
 *     The prompt goes through the model's chat template (one user message, the assistant's turn
 *     opened); then up to Max-Tokens tokens are chosen greedily (the lowest id of the largest logit),
 *     stopping early at the end-of-turn token.
 *   Action "Continue": up to Max-Tokens more tokens of the generation in progress.
 *   Output: {"data": <text of this message's tokens>, "tokens": [ids], "prompt-tokens": n,
 *            "position": <tokens in the KV cache>, "stop": "eos" | "max-tokens"}
 * A prompt that does not fit the context with its Max-Tokens, a Continue with nothing to continue, a
 * missing tag or a bad number is the message's Error; so is anything the host refuses (an unknown model
 * id, a malformed model file, running out of gas), which traps.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <emscripten.h>

#define AO_TENSOR(name) __attribute__((import_module("ao_tensor"), import_name(#name)))
AO_TENSOR(model_open) int32_t ao_model_open(const char *id, uint32_t id_len);
AO_TENSOR(model_info) void ao_model_info(int32_t model, uint32_t *out);
AO_TENSOR(model_chat) int32_t ao_model_chat(int32_t model, const char *text, uint32_t len, uint32_t *out, uint32_t cap);
AO_TENSOR(model_detokenize) int32_t ao_model_detokenize(int32_t model, const uint32_t *ids, uint32_t n, char *out, uint32_t cap);
AO_TENSOR(model_forward) void ao_model_forward(int32_t model, int32_t *kv, uint32_t capacity, uint32_t pos, uint32_t token, int32_t *logits);
AO_TENSOR(model_forward_batch) void ao_model_forward_batch(int32_t model, int32_t *kv, uint32_t capacity, uint32_t pos, const uint32_t *tokens, uint32_t n, int32_t *logits);

#include "../common/ao_msg.h"

/* ---- the generation in progress -------------------------------------------------------------------- */

enum { INFO_VOCAB, INFO_CONTEXT, INFO_LAYERS, INFO_EMBD, INFO_KV_BYTES, INFO_BOS, INFO_EOS, INFO_WORDS = 8 };

static char model_id[257];
static uint32_t info[INFO_WORDS];
static uint32_t capacity = 0;   /* KV positions reserved */
static int32_t *kv = NULL;      /* capacity * info[INFO_KV_BYTES] bytes */
static int32_t *logits = NULL;  /* info[INFO_VOCAB] values */
static uint32_t *prompt = NULL; /* capacity ids */
static uint32_t prompt_tokens = 0;
static uint32_t position = 0;   /* tokens in the KV cache */
static uint32_t pending = 0;    /* the last token chosen, not yet run */
static int in_progress = 0;     /* a generation that can continue */

static uint32_t argmax(const int32_t *v, uint32_t n) {
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* (Re)allocates the buffers for `cap` positions of the current model. */
static const char *reserve(uint32_t cap) {
    size_t kv_bytes = (size_t)cap * info[INFO_KV_BYTES];
    if (info[INFO_KV_BYTES] && kv_bytes / info[INFO_KV_BYTES] != cap) return "the KV cache would not fit in memory";
    free(kv);
    free(logits);
    free(prompt);
    kv = malloc(kv_bytes);
    logits = malloc((size_t)info[INFO_VOCAB] * 4);
    prompt = malloc((size_t)cap * 4);
    capacity = (kv && logits && prompt) ? cap : 0;
    return capacity ? NULL : "out of memory for the KV cache";
}

/* ---- the reply ------------------------------------------------------------------------------------- */

struct buf { char *p; size_t len, cap; };

static int put(struct buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n;
        char *p = realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 1;
}

static int puts_(struct buf *b, const char *s) { return put(b, s, strlen(s)); }

static int put_u(struct buf *b, unsigned long v) {
    char tmp[24];
    char *e = fmt_u(tmp, v);
    return put(b, tmp, (size_t)(e - tmp));
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    else if ((s[0] & 0xe0) == 0xc0) { len = 2; cp = s[0] & 0x1f; }
    else if ((s[0] & 0xf0) == 0xe0) { len = 3; cp = s[0] & 0x0f; }
    else if ((s[0] & 0xf8) == 0xf0) { len = 4; cp = s[0] & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp < 0xe000))
        return 0;
    return len;
}

/* `n` bytes as a JSON string; bytes that are not UTF-8 become U+FFFD. */
static int put_json_string(struct buf *b, const char *s, size_t n) {
    if (!puts_(b, "\"")) return 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            if (!put(b, e, 2)) return 0;
            i++;
        } else if (c < 0x20) {
            char e[8] = "\\u00";
            e[4] = "0123456789abcdef"[c >> 4];
            e[5] = "0123456789abcdef"[c & 15];
            if (!put(b, e, 6)) return 0;
            i++;
        } else {
            size_t len = utf8_len((const unsigned char *)s + i, n - i);
            if (!len) {
                if (!puts_(b, "\\ufffd")) return 0;
                i++;
            } else {
                if (!put(b, s + i, len)) return 0;
                i += len;
            }
        }
    }
    return puts_(b, "\"");
}

static struct buf reply_buf;

static const char *fail(const char *why) {
    reply_buf.len = 0;
    if (!puts_(&reply_buf, "{\"ok\":false,\"response\":") || !put_json_string(&reply_buf, why, strlen(why)) ||
        !puts_(&reply_buf, "}"))
        return "{\"ok\":false,\"response\":\"out of memory\"}";
    return reply_buf.p;
}

/* ---- generation ------------------------------------------------------------------------------------ */

/* Chooses up to max tokens into out[] (starting with `pending`'s successor when resuming); returns the
 * count, sets *eos when the end-of-turn token stopped it. */
static uint32_t run(int32_t model, uint32_t max, uint32_t *out, int *eos) {
    uint32_t n = 0;
    *eos = 0;
    while (n < max) {
        uint32_t token = pending;
        if (token == info[INFO_EOS]) {
            *eos = 1;
            in_progress = 0;
            break;
        }
        out[n++] = token;
        if (n == max) break; /* kept pending: a Continue runs it first */
        ao_model_forward(model, kv, capacity, position, token, logits);
        position++;
        pending = argmax(logits, info[INFO_VOCAB]);
    }
    return n;
}

static const char *answer(int32_t model, const uint32_t *ids, uint32_t n, int eos) {
    int32_t text_len = ao_model_detokenize(model, ids, n, NULL, 0);
    char *text = malloc((size_t)text_len + 1);
    if (!text) return fail("out of memory");
    ao_model_detokenize(model, ids, n, text, (uint32_t)text_len);
    struct buf *b = &reply_buf;
    b->len = 0;
    int ok = puts_(b, "{\"ok\":true,\"response\":{\"Output\":{\"data\":") && put_json_string(b, text, (size_t)text_len) &&
             puts_(b, ",\"tokens\":[");
    free(text);
    for (uint32_t i = 0; ok && i < n; i++) ok = (i == 0 || puts_(b, ",")) && put_u(b, ids[i]);
    ok = ok && puts_(b, "],\"prompt-tokens\":") && put_u(b, prompt_tokens) && puts_(b, ",\"position\":") &&
         put_u(b, position) && puts_(b, ",\"stop\":") && puts_(b, eos ? "\"eos\"" : "\"max-tokens\"") &&
         puts_(b, "},\"Messages\":[],\"Spawns\":[],\"Assignments\":[]}}");
    return ok ? b->p : fail("out of memory");
}

/* A decimal tag, or `dflt` when absent; *bad set when present but not a number in [1, limit]. */
static uint32_t number_tag(const char *msg, const char *name, uint32_t dflt, uint32_t limit, int *bad) {
    char *v = tag(msg, name);
    if (!v) return dflt;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (end == v || *end || n < 1 || n > limit) *bad = 1;
    free(v);
    return (uint32_t)n;
}

static const char *generate(const char *msg, const char *text) {
    char *id = tag(msg, "Model");
    if (!id || strlen(id) >= sizeof model_id) {
        free(id);
        return fail("Generate needs a Model tag: the id of the data item holding the model");
    }
    int bad = 0;
    uint32_t max = number_tag(msg, "Max-Tokens", 16, 1u << 20, &bad);
    uint32_t want = number_tag(msg, "Context", 512, 1u << 20, &bad);
    if (bad) {
        free(id);
        return fail("Max-Tokens and Context must be whole numbers from 1");
    }
    int32_t model = ao_model_open(id, (uint32_t)strlen(id));
    strcpy(model_id, id);
    free(id);
    ao_model_info(model, info);
    if (want > info[INFO_CONTEXT]) return fail("Context is larger than the model's context length");
    in_progress = 0;
    if (capacity != want) {
        const char *why = reserve(want);
        if (why) return fail(why);
    }
    int32_t n = ao_model_chat(model, text, (uint32_t)strlen(text), prompt, capacity);
    if (n < 1 || (uint32_t)n >= capacity || (uint64_t)n + max > capacity) {
        static char why[192];
        char *e = why;
        strcpy(e, "the prompt is ");
        e = fmt_u(e + strlen(e), (unsigned long)n);
        strcpy(e, " tokens; with Max-Tokens it needs more than the ");
        e = fmt_u(e + strlen(e), capacity);
        strcpy(e, " positions of the context");
        return fail(why);
    }
    prompt_tokens = (uint32_t)n;
    /* The prompt in one pass (the same cache, logits and gas as one model_forward per token). */
    ao_model_forward_batch(model, kv, capacity, 0, prompt, prompt_tokens, logits);
    position = prompt_tokens;
    pending = argmax(logits, info[INFO_VOCAB]);
    in_progress = 1;
    uint32_t *out = malloc((size_t)max * 4);
    if (!out) return fail("out of memory");
    int eos;
    uint32_t got = run(model, max, out, &eos);
    const char *r = answer(model, out, got, eos);
    free(out);
    return r;
}

static const char *continue_(const char *msg) {
    if (!in_progress) return fail("there is no generation to continue (Generate first; it ended at end of turn)");
    int bad = 0;
    uint32_t max = number_tag(msg, "Max-Tokens", 16, 1u << 20, &bad);
    if (bad) return fail("Max-Tokens must be a whole number from 1");
    if ((uint64_t)position + max > capacity) return fail("Max-Tokens more tokens do not fit the context");
    int32_t model = ao_model_open(model_id, (uint32_t)strlen(model_id));
    /* The token chosen last is run first. */
    ao_model_forward(model, kv, capacity, position, pending, logits);
    position++;
    pending = argmax(logits, info[INFO_VOCAB]);
    uint32_t *out = malloc((size_t)max * 4);
    if (!out) return fail("out of memory");
    int eos;
    uint32_t got = run(model, max, out, &eos);
    const char *r = answer(model, out, got, eos);
    free(out);
    return r;
}

/* ---- entry points ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return 0;
}

EMSCRIPTEN_KEEPALIVE
const char *handle(const char *msg, const char *env) {
    (void)env;
    char *action = tag(msg, "Action");
    char *data = string_at(get(msg, "Data"));
    const char *result;
    if (!action) result = fail("the message needs an Action tag");
    else if (strcmp(action, "Generate") == 0) result = data ? generate(msg, data) : fail("Generate needs the prompt as Data");
    else if (strcmp(action, "Continue") == 0) result = continue_(msg);
    else result = fail("unknown Action (Generate, Continue)");
    free(action);
    free(data);
    return result;
}
