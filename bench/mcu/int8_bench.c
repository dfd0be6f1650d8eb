/* bench/mcu/int8_bench.c: the DENSE int8 baseline of bench/mcu_int8.py, counted on a Cortex-M7 under QEMU the same way
 * bench/mcu/mcu_bench.c counts the packed runtime (mps2-an500, -icount, CMSDK timer read around one frame).
 *
 * What an MCU user would deploy instead of a sparse ticket, written the way CMSIS-NN's s8 kernels work: int8 weights
 * (per-output-channel scale) widened to int16 pairs, im2col of the input patch into an int16 column, two output
 * channels x two output pixels per pass (linear: four channels) with the dual 16-bit multiply-accumulate SMLAD
 * (2 MACs per instruction) into int32
 * accumulators, then a per-channel fixed-point requantization (64-bit multiply + rounding shift). Every weight is
 * multiplied, zero or not (dense). The spiking part is fixed point too: membrane Q12 in int32, v = (v*beta)>>15 + I,
 * spike = v > threshold, reset. Activations (spikes 0/1, raw pixels 0..255) are int16, HWC.
 * The generated int8_model.h holds the layer table and the frames; output per frame, parsed by bench/mcu.py:
 *   frame <i> ticks <timer ticks> events 0 logits <hex int32...> */
#include <stdint.h>
#include <stddef.h>
#include "int8_model.h"
#if defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#define SMLAD(x, y, acc) __smlad((x), (y), (acc))
#else /* host build (SLT_HOST): the same arithmetic in C, to check the kernel against numpy without a toolchain */
static int32_t SMLAD(uint32_t x, uint32_t y, int32_t acc) {
    return acc + (int32_t)(int16_t)(x & 0xFFFFu) * (int16_t)(y & 0xFFFFu) + (int32_t)(int16_t)(x >> 16) * (int16_t)(y >> 16);
}
#endif

#ifdef SLT_HOST
#include <stdio.h>
static char line[64 + 12 * N_CLASSES];
static unsigned pos;
static void put(const char *s) { while (*s && pos < sizeof(line) - 2) line[pos++] = *s++; }
static void put_u(uint64_t v) { pos += (unsigned)snprintf(line + pos, sizeof(line) - pos, "%llu", (unsigned long long)v); }
static void put_hex(uint32_t v) { pos += (unsigned)snprintf(line + pos, sizeof(line) - pos, "%08x", (unsigned)v); }
static void flush(void) { line[pos] = 0; puts(line); pos = 0; }
static uint32_t now(void) { return 0; }
#else
#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)

void *memset(void *d, int c, size_t n);
void *memset(void *d, int c, size_t n) {
    unsigned char *p = (unsigned char *)d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
static char line[64 + 12 * N_CLASSES];
static unsigned pos;
static void put(const char *s) { while (*s && pos < sizeof(line) - 2) line[pos++] = *s++; }
static void put_u(uint64_t v) {
    char b[24];
    int i = 0;
    do { b[i++] = (char)('0' + (int)(v % 10u)); v /= 10u; } while (v);
    while (i && pos < sizeof(line) - 2) line[pos++] = b[--i];
}
static void put_hex(uint32_t v) {
    int i;
    for (i = 28; i >= 0 && pos < sizeof(line) - 2; i -= 4) line[pos++] = "0123456789abcdef"[(v >> i) & 15u];
}
static void flush(void) { line[pos++] = '\n'; line[pos] = 0; semihost(0x04, line); pos = 0; }
static void quit(int code) {
    semihost(0x18, (const void *)(uintptr_t)(code ? 0x20023u : 0x20026u));
    for (;;) {}
}
static uint32_t now(void) { return TIMER0_VALUE; }
static uint32_t calib(uint32_t n) {
    uint32_t t0, t1;
    t0 = now();
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    t1 = now();
    return t0 - t1;
}
#endif

static int32_t requant(int32_t acc, int32_t mult, int32_t shift, int32_t bias) {
    return (int32_t)(((int64_t)acc * mult + ((int64_t)1 << (shift - 1))) >> shift) + bias;
}

static int16_t col[2][MAX_COL];    /* im2col columns of two output pixels (even length, zero padded) */
static int32_t cur[MAX_ACT];       /* currents of one layer, HWC */
static int32_t first_cur[MAX_ACT]; /* the first layer's currents: same image every step, computed once */
static int16_t act[2][MAX_ACT];    /* int16 activations (pixels, then spikes), HWC, ping-pong */
static int32_t vmem[MAX_STATE];    /* membrane potentials of every LIF layer */
static int32_t logits[N_CLASSES];

/* the im2col column of output pixel p: the k x k x C input patch in (ky, kx, c) order, 0 outside the image */
static void im2col(const layer_t *L, const int16_t *in, int p, int16_t *dst) {
    const int oy = p / L->ow, ox = p % L->ow;
    int16_t *q = dst;
    int ky, kx, c;
    for (ky = 0; ky < L->k; ky++) {
        const int y = oy * L->s - L->p + ky;
        for (kx = 0; kx < L->k; kx++) {
            const int x = ox * L->s - L->p + kx;
            if (y < 0 || y >= L->h || x < 0 || x >= L->w) {
                for (c = 0; c < L->c; c++) *q++ = 0;
            } else {
                const int16_t *r = in + (y * L->w + x) * L->c;
                for (c = 0; c < L->c; c++) *q++ = r[c];
            }
        }
    }
    while (q < dst + L->col_len) *q++ = 0;
}

/* dense conv / linear (a linear layer is a 1x1 "conv" on a 1x1 map with C = fan-in). CMSIS-NN's
 * arm_nn_mat_mult_kernel_s8_s16 blocking: conv layers take two output pixels x two output channels per pass (four
 * int32 accumulators, every loaded word used twice, 4 SMLAD = 8 MACs per 4 loads); linear layers four channels x
 * the one input column (the input word loaded once for 4 SMLAD). Weights are stored widened to int16 (CMSIS-NN
 * widens int8 with SXTB16 in the loop: storing them wide saves those instructions, in the baseline's favour). */
static void layer_cur(const layer_t *L, const int16_t *in, int32_t *out) {
    const int n2 = L->col_len / 2, npix = L->oh * L->ow;
    int p, o, i;
    if (L->k == 1 && L->h == 1) {
        const uint32_t *a = (const uint32_t *)(const void *)in;
        for (o = 0; o < L->o; o += 4) {   /* rows padded to a multiple of 4 (zeros) */
            const uint32_t *w0 = (const uint32_t *)(const void *)(L->w16 + o * L->col_len);
            const uint32_t *w1 = w0 + n2, *w2 = w1 + n2, *w3 = w2 + n2;
            int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;   /* scalars: an array would live on the stack */
            for (i = 0; i + 1 < n2; i += 2) {          /* unrolled by two: half the loop overhead */
                const uint32_t x = a[i], y = a[i + 1];
                s0 = SMLAD(x, w0[i], s0);
                s1 = SMLAD(x, w1[i], s1);
                s2 = SMLAD(x, w2[i], s2);
                s3 = SMLAD(x, w3[i], s3);
                s0 = SMLAD(y, w0[i + 1], s0);
                s1 = SMLAD(y, w1[i + 1], s1);
                s2 = SMLAD(y, w2[i + 1], s2);
                s3 = SMLAD(y, w3[i + 1], s3);
            }
            if (i < n2) {
                const uint32_t x = a[i];
                s0 = SMLAD(x, w0[i], s0);
                s1 = SMLAD(x, w1[i], s1);
                s2 = SMLAD(x, w2[i], s2);
                s3 = SMLAD(x, w3[i], s3);
            }
            out[o] = requant(s0, L->mult[o], L->shift[o], L->bias[o]);
            if (o + 1 < L->o) out[o + 1] = requant(s1, L->mult[o + 1], L->shift[o + 1], L->bias[o + 1]);
            if (o + 2 < L->o) out[o + 2] = requant(s2, L->mult[o + 2], L->shift[o + 2], L->bias[o + 2]);
            if (o + 3 < L->o) out[o + 3] = requant(s3, L->mult[o + 3], L->shift[o + 3], L->bias[o + 3]);
        }
        return;
    }
    for (p = 0; p < npix; p += 2) {
        const int two = p + 1 < npix;
        const uint32_t *a0 = (const uint32_t *)(const void *)col[0], *a1 = (const uint32_t *)(const void *)col[1];
        im2col(L, in, p, col[0]);
        if (two) im2col(L, in, p + 1, col[1]);
        else a1 = a0;
        for (o = 0; o < L->o; o += 2) {
            const uint32_t *w0 = (const uint32_t *)(const void *)(L->w16 + o * L->col_len);
            const uint32_t *w1 = w0 + n2;
            int32_t s00 = 0, s01 = 0, s10 = 0, s11 = 0;   /* s<channel><pixel> */
            for (i = 0; i + 1 < n2; i += 2) {         /* unrolled by two */
                uint32_t x0 = a0[i], x1 = a1[i], u = w0[i], v = w1[i];
                s00 = SMLAD(x0, u, s00);
                s01 = SMLAD(x1, u, s01);
                s10 = SMLAD(x0, v, s10);
                s11 = SMLAD(x1, v, s11);
                x0 = a0[i + 1]; x1 = a1[i + 1]; u = w0[i + 1]; v = w1[i + 1];
                s00 = SMLAD(x0, u, s00);
                s01 = SMLAD(x1, u, s01);
                s10 = SMLAD(x0, v, s10);
                s11 = SMLAD(x1, v, s11);
            }
            if (i < n2) {
                const uint32_t x0 = a0[i], x1 = a1[i], u = w0[i], v = w1[i];
                s00 = SMLAD(x0, u, s00);
                s01 = SMLAD(x1, u, s01);
                s10 = SMLAD(x0, v, s10);
                s11 = SMLAD(x1, v, s11);
            }
            out[p * L->o + o] = requant(s00, L->mult[o], L->shift[o], L->bias[o]);
            if (two) out[(p + 1) * L->o + o] = requant(s01, L->mult[o], L->shift[o], L->bias[o]);
            if (o + 1 < L->o) {
                out[p * L->o + o + 1] = requant(s10, L->mult[o + 1], L->shift[o + 1], L->bias[o + 1]);
                if (two) out[(p + 1) * L->o + o + 1] = requant(s11, L->mult[o + 1], L->shift[o + 1], L->bias[o + 1]);
            }
        }
    }
}

static void lif(const layer_t *L, const int32_t *I, int32_t *v, int16_t *spk, int first) {
    const int n = L->oh * L->ow * L->o;
    int i;
    for (i = 0; i < n; i++) {
        int32_t x = first ? I[i] : (int32_t)(((int64_t)v[i] * L->beta_q15) >> 15) + I[i];
        const int s = x > L->thr;
        if (s) x = L->reset_subtract ? x - L->thr : 0;
        v[i] = x;
        spk[i] = (int16_t)s;
    }
}

static void run_frame(const int16_t *img) {
    int t, l, i;
    for (i = 0; i < N_CLASSES; i++) logits[i] = 0;
    layer_cur(&LAYERS[0], img, first_cur);
    for (t = 0; t < T_STEPS; t++) {
        const int16_t *in = 0;
        int32_t *v = vmem;
        for (l = 0; l < N_LAYERS; l++) {
            const layer_t *L = &LAYERS[l];
            const int32_t *I = first_cur;
            if (l > 0) {
                layer_cur(L, in, cur);
                I = cur;
            }
            if (l == N_LAYERS - 1) {
                for (i = 0; i < N_CLASSES; i++) logits[i] += I[i];
            } else {
                lif(L, I, v, act[l & 1], t == 0);
                v += L->oh * L->ow * L->o;
                in = act[l & 1];
            }
        }
    }
}

int main(void);
#ifndef SLT_HOST
void reset_handler(void);
extern uint32_t _sbss, _ebss, _estack;
__attribute__((section(".vectors"), used)) static const uintptr_t vectors[16] = {
    (uintptr_t)&_estack, (uintptr_t)reset_handler};
void reset_handler(void) {
    uint32_t *p;
    for (p = &_sbss; p < &_ebss; p++) *p = 0;
    quit(main());
}
#endif

int main(void) {
    uint32_t f, i, empty;
#ifndef SLT_HOST
    TIMER0_CTRL = 0;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = 1u;
    {
        uint32_t t0 = now(), t1 = now();
        empty = t0 - t1;
    }
    put("empty ticks "); put_u(empty); flush();
    for (i = 0; i < 3; i++) {
        const uint32_t n = 1000000u * (i + 1u);
        put("calib "); put_u(2ull * n); put(" ticks "); put_u(calib(n)); flush();
    }
#else
    empty = 0;
    (void)empty;
#endif
    for (f = 0; f < N_FRAMES; f++) {
        uint32_t t0, t1;
        t0 = now();
        run_frame(FRAMES[f]);
        t1 = now();
        put("frame "); put_u(f); put(" ticks "); put_u(t0 - t1); put(" events 0 logits");
        for (i = 0; i < N_CLASSES; i++) { put(" "); put_hex((uint32_t)logits[i]); }
        flush();
    }
    put("done"); flush();
    return 0;
}
