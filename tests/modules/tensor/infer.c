/*
 * ao-cu's inference test process (C, Emscripten, format wasm32-unknown-emscripten2).
 *
 * handle(msg, env) reads the message's `Action` tag and `Data` with a minimal JSON scanner:
 *   Action "Load-Model": Data is the model JSON written by crates/cu-gpu/train/train_digits.py
 *     (format "ao-tensor-mlp-v1", see docs/tensor-api.md): base64 int8 weights (in x out, row-major),
 *     base64 int32 LE biases, requantisation parameters of hidden layers, softmax beta of the last.
 *     Output: "loaded <layers> layers, <in> inputs".
 *   Action "Classify": Data is base64 int8 samples (input len bytes each, concatenated). Every layer runs
 *     through the ao_tensor imports (matmul_i8, add_i32, requantize, relu_i8, softmax_argmax).
 *     Output: "<class>,<class>,...;probs=<FNV-1a 32 of every probability, hex>".
 *   Action "Call": Data is "<import> <arg> <arg> ..." (decimal); calls that ao_tensor import with those raw
 *     arguments (pointers included, so tests can pass bad ones). Output: "called <import>".
 *     Data "scratch" instead returns the address of a 64 KiB scratch buffer: "scratch <address>".
 * Any other action, or a malformed message, is the message's Error ({"ok":false}).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <emscripten.h>

#define AO_TENSOR(name) __attribute__((import_module("ao_tensor"), import_name(#name)))
AO_TENSOR(matmul_i8) void ao_matmul_i8(const int8_t *a, const int8_t *b, int32_t *c, uint32_t m, uint32_t k, uint32_t n);
AO_TENSOR(requantize) void ao_requantize(const int32_t *x, int8_t *y, uint32_t len, int32_t multiplier, int32_t shift, int32_t zero_point);
AO_TENSOR(add_i8) void ao_add_i8(const int8_t *a, const int8_t *b, int8_t *out, uint32_t len, uint32_t b_len);
AO_TENSOR(add_i32) void ao_add_i32(const int32_t *a, const int32_t *b, int32_t *out, uint32_t len, uint32_t b_len);
AO_TENSOR(relu_i8) void ao_relu_i8(const int8_t *x, int8_t *out, uint32_t len);
AO_TENSOR(relu_i32) void ao_relu_i32(const int32_t *x, int32_t *out, uint32_t len);
AO_TENSOR(softmax_argmax) void ao_softmax_argmax(const int32_t *logits, uint32_t *probs, uint32_t *argmax, uint32_t rows, uint32_t cols, uint32_t beta);

#include "../common/ao_msg.h"


/* ---- base64 ---------------------------------------------------------------------------------------- */

static int b64v(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

/* Decodes base64 text into a new buffer; *len receives the byte count. NULL on bad input. */
static uint8_t *b64decode(const char *s, size_t *len) {
    size_t n = strlen(s);
    uint8_t *out = malloc(n / 4 * 3 + 3);
    if (!out) return NULL;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '=') break;
        int v = b64v(s[i]);
        if (v < 0) { free(out); return NULL; }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *len = o;
    return out;
}

/* ---- the model --------------------------------------------------------------------------------------- */

#define MAX_LAYERS 8

struct layer {
    uint32_t in, out;
    int8_t *weights;  /* in x out */
    int32_t *bias;    /* out */
    int32_t multiplier, shift, zero_point;
    int relu;
    int last;
    uint32_t beta;
};

static struct layer layers[MAX_LAYERS];
static int layer_count = 0;
static uint32_t input_len = 0;

static void free_model(void) {
    for (int i = 0; i < layer_count; i++) {
        free(layers[i].weights);
        free(layers[i].bias);
    }
    layer_count = 0;
    input_len = 0;
}

static const char *load_model(const char *text) {
    free_model();
    char *format = string_at(get(text, "format"));
    int good = format && strcmp(format, "ao-tensor-mlp-v1") == 0;
    free(format);
    if (!good) return "model: format is not ao-tensor-mlp-v1";
    int ok = 1;
    const char *input = get(text, "input");
    long long in_len = input ? number_at(get(input, "len"), &ok) : 0;
    const char *list = get(text, "layers");
    if (!ok || in_len <= 0 || !list || *list != '[') return "model: no input.len or layers";
    const char *p = ws(list + 1);
    while (*p == '{') {
        if (layer_count == MAX_LAYERS) { free_model(); return "model: too many layers"; }
        struct layer *l = &layers[layer_count];
        memset(l, 0, sizeof *l);
        long long in = number_at(get(p, "in"), &ok), out = number_at(get(p, "out"), &ok);
        if (!ok || in <= 0 || out <= 0 || in > 65536 || out > 65536) { free_model(); return "model: bad layer shape"; }
        l->in = (uint32_t)in;
        l->out = (uint32_t)out;
        layer_count++;
        char *w = string_at(get(p, "weights")), *b = string_at(get(p, "bias"));
        size_t wl = 0, bl = 0;
        l->weights = w ? (int8_t *)b64decode(w, &wl) : NULL;
        l->bias = b ? (int32_t *)b64decode(b, &bl) : NULL;
        free(w);
        free(b);
        if (!l->weights || !l->bias || wl != (size_t)in * (size_t)out || bl != 4 * (size_t)out) {
            free_model();
            return "model: weights or bias missing or of the wrong size";
        }
        const char *rq = get(p, "requant");
        const char *beta = get(p, "softmax_beta");
        if (rq) {
            l->multiplier = (int32_t)number_at(get(rq, "multiplier"), &ok);
            l->shift = (int32_t)number_at(get(rq, "shift"), &ok);
            l->zero_point = (int32_t)number_at(get(rq, "zero_point"), &ok);
            const char *relu = get(p, "relu");
            l->relu = relu && strncmp(relu, "true", 4) == 0;
        } else if (beta) {
            l->last = 1;
            l->beta = (uint32_t)number_at(beta, &ok);
        } else {
            ok = 0;
        }
        if (!ok) { free_model(); return "model: a layer lacks requant or softmax_beta"; }
        p = skip_value(p);
        if (!p) { free_model(); return "model: bad JSON"; }
        p = ws(p);
        if (*p == ',') p = ws(p + 1);
    }
    if (layer_count == 0 || !layers[layer_count - 1].last || (uint32_t)in_len != layers[0].in) {
        free_model();
        return "model: the last layer must have softmax_beta and the first take input.len inputs";
    }
    for (int i = 0; i + 1 < layer_count; i++) {
        if (layers[i].last || layers[i].out != layers[i + 1].in) {
            free_model();
            return "model: layer shapes do not chain";
        }
    }
    input_len = (uint32_t)in_len;
    return NULL;
}

static char loaded_text[128];

/* Runs every sample through the model; returns the Output text (malloc'd) or NULL with *why set. */
static char *classify(const int8_t *x, uint32_t rows, const char **why) {
    int8_t *act = malloc((size_t)rows * input_len);
    if (!act) { *why = "out of memory"; return NULL; }
    memcpy(act, x, (size_t)rows * input_len);
    char *text = NULL;
    for (int i = 0; i < layer_count; i++) {
        struct layer *l = &layers[i];
        size_t cells = (size_t)rows * l->out;
        int32_t *acc = malloc(cells * 4);
        if (!acc) { *why = "out of memory"; free(act); return NULL; }
        ao_matmul_i8(act, l->weights, acc, rows, l->in, l->out);
        ao_add_i32(acc, l->bias, acc, (uint32_t)cells, l->out);
        free(act);
        act = NULL;
        if (!l->last) {
            act = malloc(cells);
            if (!act) { free(acc); *why = "out of memory"; return NULL; }
            ao_requantize(acc, act, (uint32_t)cells, l->multiplier, l->shift, l->zero_point);
            if (l->relu) ao_relu_i8(act, act, (uint32_t)cells);
            free(acc);
            continue;
        }
        uint32_t *probs = malloc(cells * 4), *cls = malloc((size_t)rows * 4);
        text = malloc((size_t)rows * 12 + 32);
        if (!probs || !cls || !text) {
            free(probs); free(cls); free(text); free(acc);
            *why = "out of memory";
            return NULL;
        }
        ao_softmax_argmax(acc, probs, cls, rows, l->out, l->beta);
        uint32_t h = 2166136261u;
        const uint8_t *pb = (const uint8_t *)probs;
        for (size_t j = 0; j < cells * 4; j++) h = (h ^ pb[j]) * 16777619u;
        char *t = text;
        for (uint32_t r = 0; r < rows; r++) {
            if (r) *t++ = ',';
            t = fmt_u(t, cls[r]);
        }
        memcpy(t, ";probs=", 7);
        t += 7;
        for (int s = 28; s >= 0; s -= 4) *t++ = "0123456789abcdef"[(h >> s) & 15];
        *t = 0;
        free(probs); free(cls); free(acc);
    }
    return text;
}

/* ---- raw calls for tests --------------------------------------------------------------------------- */

static uint8_t scratch[65536];

static const char *raw_call(const char *data) {
    static char out[96];
    char name[32];
    size_t n = 0;
    const char *p = data;
    while (*p && *p != ' ' && n + 1 < sizeof name) name[n++] = *p++;
    name[n] = 0;
    if (strcmp(name, "scratch") == 0) {
        char *e = out;
        memcpy(e, "scratch ", 8);
        e = fmt_u(e + 8, (unsigned long)(uintptr_t)scratch);
        *e = 0;
        return out;
    }
    uint32_t a[6] = {0};
    for (int i = 0; i < 6 && *p; i++) a[i] = (uint32_t)strtoul(p, (char **)&p, 10);
#define P(i) ((void *)(uintptr_t)a[i])
    if (strcmp(name, "matmul_i8") == 0) ao_matmul_i8(P(0), P(1), P(2), a[3], a[4], a[5]);
    else if (strcmp(name, "requantize") == 0) ao_requantize(P(0), P(1), a[2], (int32_t)a[3], (int32_t)a[4], (int32_t)a[5]);
    else if (strcmp(name, "add_i8") == 0) ao_add_i8(P(0), P(1), P(2), a[3], a[4]);
    else if (strcmp(name, "add_i32") == 0) ao_add_i32(P(0), P(1), P(2), a[3], a[4]);
    else if (strcmp(name, "relu_i8") == 0) ao_relu_i8(P(0), P(1), a[2]);
    else if (strcmp(name, "relu_i32") == 0) ao_relu_i32(P(0), P(1), a[2]);
    else if (strcmp(name, "softmax_argmax") == 0) ao_softmax_argmax(P(0), P(1), P(2), a[3], a[4], a[5]);
    else return NULL;
#undef P
    char *e = out;
    memcpy(e, "called ", 7);
    e += 7;
    strcpy(e, name);
    return out;
}

/* ---- entry points -------------------------------------------------------------------------------- */

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
    int ok = 0;
    if (!action || !data) {
        result = "the message needs an Action tag and a Data string";
    } else if (strcmp(action, "Load-Model") == 0) {
        const char *why = load_model(data);
        if (why) {
            result = why;
        } else {
            char *e = loaded_text;
            memcpy(e, "loaded ", 7);
            e = fmt_u(e + 7, (unsigned long)layer_count);
            memcpy(e, " layers, ", 9);
            e = fmt_u(e + 9, input_len);
            strcpy(e, " inputs");
            result = loaded_text;
            ok = 1;
        }
    } else if (strcmp(action, "Classify") == 0) {
        size_t len = 0;
        uint8_t *x = b64decode(data, &len);
        if (layer_count == 0) {
            result = "no model loaded";
        } else if (!x || len == 0 || len % input_len != 0) {
            result = "Classify: Data must be base64 of whole samples";
        } else {
            const char *why = "";
            char *text = classify((const int8_t *)x, (uint32_t)(len / input_len), &why);
            free(x);
            x = NULL;
            if (text) {
                const char *r = respond(1, text);
                free(text);
                free(action);
                free(data);
                return r;
            }
            result = why;
        }
        free(x);
    } else if (strcmp(action, "Call") == 0) {
        result = raw_call(data);
        ok = result != NULL;
        if (!result) result = "Call: unknown import";
    } else {
        result = "unknown Action";
    }
    const char *r = respond(ok, result);
    free(action);
    free(data);
    return r;
}
