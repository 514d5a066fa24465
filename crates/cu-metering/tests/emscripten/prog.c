/* A realistic Emscripten module for the cu-metering differential test: setjmp/longjmp, floats,
 * libc (printf/qsort/strtod/malloc), function pointers and switch tables. Built by the test with
 * Debian's emcc; never committed as a binary. */
#include <emscripten.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static jmp_buf env;
static int depth;

static void dive(int n) {
  depth++;
  if (n <= 0) longjmp(env, depth);
  dive(n - 1);
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef double (*op_fn)(double, double);
static double op_add(double a, double b) { return a + b; }
static double op_mul(double a, double b) { return a * b; }
static double op_div(double a, double b) { return b != 0.0 ? a / b : 0.0; }
static double op_pow(double a, double b) { return pow(a, b); }
static op_fn ops[] = {op_add, op_mul, op_div, op_pow};

static double eval(const char *prog, int len) {
  double stack[32];
  int sp = 0;
  for (int i = 0; i < len; i++) {
    char c = prog[i];
    switch (c) {
      case '+': case '*': case '/': case '^': {
        if (sp < 2) return NAN;
        double b = stack[--sp], a = stack[--sp];
        int k = c == '+' ? 0 : c == '*' ? 1 : c == '/' ? 2 : 3;
        stack[sp++] = ops[k](a, b);
        break;
      }
      case 's': if (sp) stack[sp - 1] = sin(stack[sp - 1]); break;
      case 'q': if (sp) stack[sp - 1] = sqrt(fabs(stack[sp - 1])); break;
      case 'l': if (sp) stack[sp - 1] = log1p(fabs(stack[sp - 1])); break;
      default:
        if (c >= '0' && c <= '9' && sp < 32) stack[sp++] = c - '0';
        break;
    }
  }
  return sp ? stack[sp - 1] : 0.0;
}

EMSCRIPTEN_KEEPALIVE int compute(int n) {
  double *v = malloc(sizeof(double) * (n + 1));
  if (!v) return -1;
  for (int i = 0; i <= n; i++) v[i] = sin(i * 0.7) * 100.0 + (i % 7) / 3.0;
  qsort(v, n + 1, sizeof(double), cmp);
  char buf[128];
  snprintf(buf, sizeof buf, "%.6f %.3e %d", v[0], v[n], n);
  double parsed = strtod(buf, NULL);
  depth = 0;
  int jumped = setjmp(env);
  if (!jumped) dive(n % 13);
  double r = eval("34+2*s5q/9^l", 12) + parsed + jumped + (double)strlen(buf);
  free(v);
  return (int)(r * 1000.0) ^ (int)(long long)llround(v[0] * 0);
}

EMSCRIPTEN_KEEPALIVE long long mix64(long long a, int b) {
  unsigned long long x = (unsigned long long)a;
  for (int i = 0; i < (b & 63); i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x += (unsigned long long)(i * 0x9E3779B9u);
    if (x % 5 == 0) x /= 3;
  }
  return (long long)x;
}

int main(int argc, char **argv) {
  printf("%d %lld\n", compute(argc * 20), mix64(argc, 40));
  return 0;
}
