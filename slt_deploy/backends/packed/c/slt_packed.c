/* slt_packed.c: strict reader + event-driven interpreter of packed slt-deploy models (docs/packed-format.md).
 * C99, no malloc, no libc. Build with -ffp-contract=off: the arithmetic order is part of the format. */
#include "slt_packed.h"

#define HEADER_SIZE 80u
#define RECORD_SIZE 64u
#define VERSION 1u
#define BYTE_ORDER_MARK 0x01020304u
#define MAX_NODES 4096u
#define MAX_INPUTS 4u
#define MAX_DIM (1u << 26)
#define MAX_ELEMS (1u << 26)
#define MAX_DELTA_BITS 16u
#define MAX_TOTAL_ELEMS (1u << 28)

/* Kernel choice per conv packing row with k kept weights, in half-instructions per input the row reads:
 * weight-stationary WS_BASE + k * WS_MAC; events EV_SCAN (finding the nonzero inputs) + rate * (EV_NZ + EV_ADD * k)
 * (per nonzero input: bookkeeping and k scattered adds). SIMD builds (x86-64 SSE2, NEON): the weight-stationary
 * loops run 4 lanes wide and the event kernel finds nonzero inputs through a branch-free bit mask (a mispredicted
 * branch costs more than the work); scalar builds (Cortex-M: instructions are the cost, branches are cheap) test
 * each input with one branch. Counted for gcc -O2/-O3; the choice changes speed only, never a result bit. */
#ifndef SLT_SIMD   /* -DSLT_SIMD=0/1 overrides (e.g. to count a scalar build's instructions on a SIMD host) */
#if defined(__SSE2__) || defined(__ARM_NEON) || defined(__aarch64__)
#define SLT_SIMD 1
#else
#define SLT_SIMD 0
#endif
#endif
#if SLT_SIMD && defined(__SSE2__)
#include <emmintrin.h>
#elif SLT_SIMD && (defined(__ARM_NEON) || defined(__aarch64__))
#include <arm_neon.h>
#endif
#if SLT_SIMD
#define WS_BASE 0u
#define WS_MAC 1u
#define EV_SCAN 8u
#define EV_NZ 12u
#define EV_ADD 8u
#else
#define WS_BASE 12u
#define WS_MAC 12u
#define EV_SCAN 10u
#define EV_NZ 8u
#define EV_ADD 10u
#endif

enum { OP_INPUT, OP_CONV, OP_AFFINE, OP_LIF, OP_FLATTEN, OP_ADD, OP_TOKENS, OP_PATCH, OP_ATTN, OP_TOKSUM,
       OP_OUTPUT, N_OPS };
#define F_BINARY 1u
#define F_SUBTRACT 2u

typedef struct {
    uint8_t op, n_in, flags, rank;
    uint16_t in[4];
    uint32_t d[3];
    uint32_t size;                 /* output elements */
    /* synapse */
    uint32_t ci, ih, iw, k, st, pd, rows, cols, kept, enc, bits, nsym, ntok, din;
    const uint8_t *mask, *vals, *params;
    uint32_t *rowtab;              /* rows+1 kept-count prefixes (first kept index of each row) */
    uint16_t *colidx;              /* the column of every kept weight, expanded from the mask at open */
    uint8_t sgncol;                /* binary with cols <= 2^15: colidx holds (column << 1) | sign bit */
    uint8_t reuse;                 /* synaptic node reading only the model input: step t reuses step t-1's output
                                    * when the input did not change (direct encoding: every step) */
    uint8_t defer;                 /* conv whose epilogue runs inside its in-place LIF (fused) */
    uint8_t fused;                 /* LIF working in place on a conv: applies the conv's epilogue per element */
    uint8_t rate;                  /* conv: nonzero fraction of its inputs in the last computed step, x255 (picks
                                    * each row's kernel for the next step; no effect on any result bit) */
    uint64_t last_ev;              /* synaptic events of the last computed step (counted again on reuse) */
    uint32_t *pm;                  /* binary affine reading spikes, dense enough (pop_pays): per output column its
                                    * +1 weights as input bits [cols][pwords], then its -1 weights [cols][pwords] */
    uint32_t *sb;                  /* [pwords + 1]: one token's spike bits; the nonzero word indices follow at open */
    uint16_t *sw;                  /* [pwords]: indices of the nonzero words of sb (this token) */
    uint32_t pwords;               /* ceil(din / 32) */
#if SLT_SIMD
    /* SIMD builds, single-input conv: its input staged as zero-padded phase planes (conv_staged) */
    float *stage, *acc;            /* planes [ci][st][st][ps]; accumulators [cols][lb] (rows of pw) */
    uint32_t *cvalid;              /* [lb]: 1 where an accumulator is a real output (f < ho*pw, f % pw < wo) */
    uint32_t pw, ps, lb, qneg;     /* plane row width, plane stride, ho*pw rounded up to 8, -floor(-pd / st) */
#endif
    /* lif */
    float beta, thr;
    float *v;
    uint32_t spike_off;
    /* patch select / attention */
    const uint8_t *index;
    uint32_t heads;
    float ascale;
    float *out;
} slt_node;

struct slt_model {
    const uint8_t *payload;
    uint32_t n_nodes, T, in_size, n_classes, spike_count;
    uint64_t events;
    slt_node *nodes;
};

/* ------------------------------------------------------------------------------------------------------------ */
static uint32_t rd32(const uint8_t *p) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__ARM_FEATURE_UNALIGNED) || defined(__x86_64__) || defined(__i386__))
    /* one (possibly unaligned) word load on targets that allow it (Cortex-M3/M4/M7, x86), byte loads elsewhere;
     * the value is the same little-endian word. Float weights are read per
     * event, so this is most of an event's cost on a Cortex-M7 otherwise (4 loads + 3 shifts/ors). */
    uint32_t u;
    __builtin_memcpy(&u, p, 4);
    return u;
#else
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
#endif
}
static float as_f32(uint32_t u) {
    union { uint32_t u; float f; } c;
    c.u = u;
    return c.f;
}
static float rdf(const uint8_t *p) { return as_f32(rd32(p)); }
static uint32_t f32_bits(float f) {
    union { float f; uint32_t u; } c;
    c.f = f;
    return c.u;
}
/* x != 0.0f as an integer test (no FPU compare and flag transfer): false exactly for +0 and -0 */
static int nonzero(float x) { return (f32_bits(x) << 1) != 0; }
#if !SLT_SIMD
/* the bits of *p loaded straight into an integer register (scalar event loops test most inputs and skip them:
 * one load instead of an FPU load plus a register transfer) */
static uint32_t bits_at(const float *p) {
#if defined(__GNUC__)
    uint32_t u;
    __builtin_memcpy(&u, p, 4);
    return u;
#else
    return f32_bits(*p);
#endif
}
#endif
static int finite_bits(uint32_t u) { return ((u >> 23) & 0xFFu) != 0xFFu; }

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    size_t i;
    int b;
    for (i = 0; i < n; i++) {
        c ^= p[i];
        for (b = 0; b < 8; b++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t bit_at(const uint8_t *s, uint64_t pos) { return (s[pos >> 3] >> (pos & 7u)) & 1u; }

static uint32_t read_sym(const uint8_t *s, uint64_t bitpos, uint32_t b) {
    const uint8_t *p = s + (bitpos >> 3);
    const uint32_t sh = (uint32_t)(bitpos & 7u);
    const uint32_t need = (sh + b + 7u) >> 3; /* bytes touched: 1..3 for b <= 16; never past the stream */
    uint32_t acc = p[0];
    if (need > 1) acc |= (uint32_t)p[1] << 8;
    if (need > 2) acc |= (uint32_t)p[2] << 16;
    return (acc >> sh) & ((1u << b) - 1u);
}

const char *slt_error_string(int code) {
    switch (code) {
    case SLT_OK: return "ok";
    case SLT_E_ARG: return "bad argument or arena too small";
    case SLT_E_TRUNCATED: return "file truncated";
    case SLT_E_MAGIC: return "bad magic (not a packed slt-deploy model)";
    case SLT_E_VERSION: return "unknown format version";
    case SLT_E_HEADER: return "invalid header field";
    case SLT_E_CRC: return "checksum mismatch";
    case SLT_E_NODE: return "invalid node record";
    case SLT_E_SHAPE: return "impossible or oversize shape";
    case SLT_E_SECTION: return "data section outside the data area";
    case SLT_E_STREAM: return "weight stream inconsistent with its layer";
    case SLT_E_VALUE: return "invalid number";
    case SLT_E_TEXT: return "string not valid UTF-8, or labels ending in a newline";
    default: return "unknown error";
    }
}

/* ------------------------------------------------------------------------------------------------------------ */
/* parsing: one pass that validates everything; with ctx->arena it also builds the model. parse() reads the
 * header, then per record the shared checks, the inputs' shapes and the op's own parser (PARSE[op]). */

typedef struct {
    const uint8_t *pl;     /* payload */
    uint32_t psize, table_end;
    uint8_t *arena;        /* NULL: only count bytes */
    size_t used, cap;
    uint32_t spike_total;  /* LIF outputs so far (each LIF's offset in the spike record) */
} parse_ctx;

static size_t align8(size_t n) { return (n + 7u) & ~(size_t)7u; }

static void *take(parse_ctx *c, size_t bytes) {
    void *p = 0;
    if (c->arena && c->used + bytes <= c->cap) p = c->arena + c->used;
    c->used += align8(bytes);
    return p;
}

/* payload[off, off+size) inside the data area (and 4-aligned when align); size 0 is always fine */
static int region(const parse_ctx *c, uint32_t off, uint64_t size, int align) {
    if (size == 0) return 1;
    if ((align && (off & 3u)) || off < c->table_end || off > c->psize || size > (uint64_t)(c->psize - off)) return 0;
    return 1;
}

/* a string section: inside the data area and strict UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF,
 * no truncated sequence; exactly what Python's bytes.decode("utf-8") accepts); labels must not end with '\n' */
static int text_ok(const parse_ctx *c, uint32_t off, uint32_t size, int labels) {
    const uint8_t *s = c->pl + off;
    uint32_t i = 0;
    if (!region(c, off, size, 0)) return SLT_E_SECTION;
    if (labels && size && s[size - 1] == '\n') return SLT_E_TEXT;
    while (i < size) {
        uint8_t b = s[i], lo = 0x80, hi = 0xBF;
        uint32_t k, extra;
        if (b < 0x80) { i++; continue; }
        if (b >= 0xC2 && b <= 0xDF) extra = 1;
        else if (b >= 0xE0 && b <= 0xEF) { extra = 2; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
        else if (b >= 0xF0 && b <= 0xF4) { extra = 3; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
        else return SLT_E_TEXT;
        if (extra > size - i - 1) return SLT_E_TEXT;
        for (k = 1; k <= extra; k++) {
            uint8_t t = s[i + k];
            if (k == 1 ? (t < lo || t > hi) : (t < 0x80 || t > 0xBF)) return SLT_E_TEXT;
        }
        i += extra + 1;
    }
    return SLT_OK;
}

static void copy_node(slt_node *d, const slt_node *src) {
    const uint8_t *a = (const uint8_t *)src;
    uint8_t *b = (uint8_t *)d;
    size_t i;
    for (i = 0; i < sizeof(slt_node); i++) b[i] = a[i];
}

/* how many input slots of the records after j name node j (records are in bounds: n_nodes*64 <= payload) */
static uint32_t consumers(const uint8_t *pl, uint32_t n_nodes, uint32_t j) {
    uint32_t i, k, cnt = 0;
    for (i = j + 1; i < n_nodes; i++) {
        const uint8_t *r = pl + (size_t)i * RECORD_SIZE;
        uint32_t n_in = r[1], w1 = rd32(r + 4), w2 = rd32(r + 8), in[4];
        in[0] = w1 & 0xFFFFu; in[1] = w1 >> 16; in[2] = w2 & 0xFFFFu; in[3] = w2 >> 16;
        for (k = 0; k < n_in && k < MAX_INPUTS; k++) cnt += in[k] == j;
    }
    return cnt;
}

/* node j is a synaptic layer reading only the model input, or a single-input flatten working in place in such a
 * layer's buffer: its buffer must keep its values from step to step (no LIF may work in place in it) */
static int keeps_buffer(const uint8_t *pl, uint32_t n_nodes, uint32_t j) {
    while (j != 0) {
        const uint8_t *r = pl + (size_t)j * RECORD_SIZE;
        uint32_t op = r[0], n_in = r[1], w1 = rd32(r + 4), w2 = rd32(r + 8);
        if (op == OP_CONV || op == OP_AFFINE)
            return n_in >= 1 && n_in <= MAX_INPUTS && w1 == 0 && w2 == 0;
        if (op != OP_FLATTEN || n_in != 1 || (w1 & 0xFFFFu) == 0 || (w1 & 0xFFFFu) >= j ||
            consumers(pl, n_nodes, w1 & 0xFFFFu) != 1)
            return 0;
        j = w1 & 0xFFFFu;
    }
    return 0;
}

static int same_shape(const slt_node *a, const slt_node *b) {
    return a->rank == b->rank && a->d[0] == b->d[0] && a->d[1] == b->d[1] && a->d[2] == b->d[2];
}

static int shape_is(const slt_node *n, uint32_t rank, uint64_t d0, uint64_t d1, uint64_t d2) {
    if (n->rank != rank) return 0;
    if (n->d[0] != d0) return 0;
    if (rank > 1 && n->d[1] != d1) return 0;
    if (rank > 2 && n->d[2] != d2) return 0;
    return 1;
}

/* validate the mask / index stream, count kept weights, fill the row table if given */
static int check_stream(slt_node *n, uint32_t *rowtab, uint16_t *colidx, const uint8_t *scale) {
    uint64_t total = (uint64_t)n->rows * n->cols;
    uint64_t i;
    if (n->enc == 0) {
        uint64_t nbytes = (total + 7u) >> 3, cnt = 0;
        uint32_t r;
        for (i = total; i < nbytes * 8u; i++)
            if (bit_at(n->mask, i)) return SLT_E_STREAM;
        for (r = 0; r < n->rows; r++) {
            uint64_t b0 = (uint64_t)r * n->cols, b1 = b0 + n->cols;
            if (rowtab) rowtab[r] = (uint32_t)cnt;
            for (i = b0; i < b1; i++)
                if (bit_at(n->mask, i)) {
                    if (scale && (rd32(scale + 4u * (uint32_t)(i - b0)) & 0x7FFFFFFFu) == 0) return SLT_E_VALUE;
                    if (colidx && cnt < n->kept) colidx[cnt] = (uint16_t)(i - b0);
                    cnt++;
                }
        }
        if (rowtab) rowtab[n->rows] = (uint32_t)cnt;
        if (cnt != n->kept) return SLT_E_STREAM;
    } else {
        uint32_t b = n->bits, e = (1u << b) - 1u, last_w = 0;
        uint64_t nbits = (uint64_t)n->nsym * b, pos = 0, kidx = 0, bitpos = 0;
        uint32_t next_row = 0;
        uint64_t nbytes = (nbits + 7u) >> 3;
        for (i = nbits; i < nbytes * 8u; i++)
            if (bit_at(n->mask, i)) return SLT_E_STREAM;
        for (i = 0; i < n->nsym; i++) {
            uint32_t s = read_sym(n->mask, bitpos, b);
            bitpos += b;
            if (s == e) { pos += e; last_w = 0; continue; }
            last_w = 1;
            pos += s;                 /* the kept flat position */
            if (pos >= total) return SLT_E_STREAM;
            if (kidx >= n->kept) return SLT_E_STREAM;
            /* pos < total <= 2^26: 32-bit arithmetic from here (no 64-bit division on small cores) */
            if (scale && (rd32(scale + 4u * ((uint32_t)pos % n->cols)) & 0x7FFFFFFFu) == 0) return SLT_E_VALUE;
            while (next_row <= n->rows && next_row * n->cols <= (uint32_t)pos) {
                if (rowtab) rowtab[next_row] = (uint32_t)kidx;
                next_row++;
            }
            if (colidx) colidx[kidx] = (uint16_t)((uint32_t)pos - (next_row - 1u) * n->cols);
            kidx++;
            pos += 1;
        }
        if (kidx != n->kept || (n->nsym && !last_w)) return SLT_E_STREAM;
        for (; next_row <= n->rows; next_row++)
            if (rowtab) rowtab[next_row] = (uint32_t)kidx;
    }
    return SLT_OK;
}

/* the header: every field checked; sets c->pl, c->psize, c->table_end and returns n_nodes and T */
static int parse_header(const uint8_t *file, size_t len, unsigned flags, parse_ctx *c, uint32_t *n_nodes,
                        uint32_t *T) {
    uint32_t psize, i, f;
    static const uint8_t magic[8] = {'S', 'L', 'T', 'P', 'A', 'C', 'K', 0};
    if (!file) return SLT_E_ARG;
    if (len < HEADER_SIZE) return SLT_E_TRUNCATED;
    for (i = 0; i < 8; i++)
        if (file[i] != magic[i]) return SLT_E_MAGIC;
    if (rd32(file + 8) != VERSION) return SLT_E_VERSION;
    if (rd32(file + 12) != HEADER_SIZE || rd32(file + 16) != BYTE_ORDER_MARK) return SLT_E_HEADER;
    if (!(flags & SLT_FLAG_NO_CRC) && crc32(file, 76) != rd32(file + 76)) return SLT_E_CRC;
    if (rd32(file + 20) != 0 || rd32(file + 64) != 0 || rd32(file + 68) != 0) return SLT_E_HEADER;
    psize = rd32(file + 24);
    if ((uint64_t)psize > (uint64_t)len - HEADER_SIZE) return SLT_E_TRUNCATED;
    if ((uint64_t)psize != (uint64_t)len - HEADER_SIZE) return SLT_E_HEADER;
    if (!(flags & SLT_FLAG_NO_CRC) && crc32(file + HEADER_SIZE, psize) != rd32(file + 72)) return SLT_E_CRC;
    *n_nodes = rd32(file + 28);
    if (*n_nodes < 2 || *n_nodes > MAX_NODES) return SLT_E_HEADER;
    if ((uint64_t)*n_nodes * RECORD_SIZE > psize) return SLT_E_HEADER;
    *T = rd32(file + 32);
    if (*T < 1 || *T > (1u << 20)) return SLT_E_HEADER;
    f = rd32(file + 36);
    if (!finite_bits(f) || !(as_f32(f) > 0.0f)) return SLT_E_HEADER;
    f = rd32(file + 40);
    if (!finite_bits(f) || !(as_f32(f) > 0.0f)) return SLT_E_HEADER;
    if (rd32(file + 44) > 1) return SLT_E_HEADER;
    c->pl = file + HEADER_SIZE;
    c->psize = psize;
    c->table_end = *n_nodes * RECORD_SIZE;
    return SLT_OK;
}

/* record i: op, flags, inputs, shape -- the checks every op shares (w = its 16 words) */
static int parse_record(uint32_t i, uint32_t n_nodes, const uint32_t *w, slt_node *nd) {
    uint32_t k;
    uint64_t prod = 1;
    for (k = 0; k < sizeof(*nd); k++) ((uint8_t *)nd)[k] = 0;
    nd->op = (uint8_t)(w[0] & 0xFFu);
    nd->n_in = (uint8_t)((w[0] >> 8) & 0xFFu);
    nd->flags = (uint8_t)((w[0] >> 16) & 0xFFu);
    nd->rank = (uint8_t)(w[0] >> 24);
    if (nd->op >= N_OPS) return SLT_E_NODE;
    {
        uint32_t defined = (nd->op == OP_CONV || nd->op == OP_AFFINE) ? F_BINARY : nd->op == OP_LIF ? F_SUBTRACT : 0;
        if (nd->flags & ~defined) return SLT_E_NODE;
    }
    {
        uint32_t lo = 1, hi = MAX_INPUTS;
        if (nd->op == OP_INPUT) lo = hi = 0;
        if (nd->op == OP_ATTN) lo = hi = 3;
        if (nd->n_in < lo || nd->n_in > hi) return SLT_E_NODE;
    }
    nd->in[0] = (uint16_t)(w[1] & 0xFFFFu); nd->in[1] = (uint16_t)(w[1] >> 16);
    nd->in[2] = (uint16_t)(w[2] & 0xFFFFu); nd->in[3] = (uint16_t)(w[2] >> 16);
    for (k = 0; k < MAX_INPUTS; k++) {
        if (k < nd->n_in && nd->in[k] >= i) return SLT_E_NODE;
        if (k >= nd->n_in && nd->in[k] != 0) return SLT_E_NODE;
    }
    if ((nd->op == OP_INPUT) != (i == 0) || (nd->op == OP_OUTPUT) != (i == n_nodes - 1)) return SLT_E_NODE;
    if (nd->rank < 1 || nd->rank > 3) return SLT_E_SHAPE;
    for (k = 0; k < 3; k++) {
        nd->d[k] = w[3 + k];
        if (k < nd->rank) {
            if (nd->d[k] < 1 || nd->d[k] > MAX_DIM) return SLT_E_SHAPE;
            prod *= nd->d[k];                      /* <= 2^26 * 2^26 before the check: no overflow */
            if (prod > MAX_ELEMS) return SLT_E_SHAPE;
        } else if (nd->d[k] != 0) {
            return SLT_E_SHAPE;
        }
    }
    if (prod > MAX_ELEMS) return SLT_E_SHAPE;
    nd->size = (uint32_t)prod;
    return SLT_OK;
}

/* the inputs' shapes, re-read from the already-validated earlier records (no scratch memory): x = the first one;
 * summed inputs must agree, attention's three must be LIF nodes of one shape; then the unused words are zero */
static int parse_inputs(const parse_ctx *c, const slt_node *nd, const uint32_t *w, slt_node *x) {
    slt_node ins[4];
    uint32_t k, q, used;
    for (k = 0; k < nd->n_in; k++) {
        const uint8_t *rr = c->pl + (size_t)nd->in[k] * RECORD_SIZE;
        uint32_t w0 = rd32(rr);
        for (q = 0; q < sizeof(slt_node); q++) ((uint8_t *)&ins[k])[q] = 0;
        ins[k].op = (uint8_t)(w0 & 0xFFu);
        ins[k].rank = (uint8_t)(w0 >> 24);
        for (q = 0; q < 3; q++) ins[k].d[q] = rd32(rr + 12u + 4u * q);
    }
    if (nd->op != OP_ATTN)
        for (k = 1; k < nd->n_in; k++)
            if (!same_shape(&ins[k], &ins[0])) return SLT_E_SHAPE;
    if (nd->n_in) copy_node(x, &ins[0]);
    else for (k = 0; k < sizeof(*x); k++) ((uint8_t *)x)[k] = 0;
    if (nd->op == OP_ATTN) {
        for (k = 0; k < 3; k++)
            if (ins[k].op != OP_LIF || !same_shape(&ins[k], &ins[0])) return SLT_E_NODE;
    }
    switch (nd->op) {
    case OP_CONV: case OP_AFFINE: used = 10; break;
    case OP_LIF: used = 4; break;
    case OP_PATCH: case OP_ATTN: used = 2; break;
    default: used = 0;
    }
    for (k = 6 + used; k < 16; k++)
        if (w[k]) return SLT_E_NODE;
    return SLT_OK;
}

/* --- one parser per op: (ctx, the node being built, its input shape x, its record words w) ------------------- */
typedef int (*parse_fn)(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w);

/* conv geometry: rows = ci*k*k, cols = output channels */
static int conv_geometry(slt_node *nd, const slt_node *x, const uint32_t *w) {
    uint32_t kw = w[9];
    nd->ci = w[6]; nd->ih = w[7]; nd->iw = w[8];
    nd->k = kw & 0xFFu; nd->st = (kw >> 8) & 0xFFu; nd->pd = (kw >> 16) & 0xFFu;
    if ((kw >> 24) || nd->k < 1 || nd->st < 1 || nd->pd >= nd->k || !shape_is(x, 3, nd->ci, nd->ih, nd->iw))
        return SLT_E_SHAPE;
    if ((uint64_t)nd->ih + 2u * nd->pd < nd->k || (uint64_t)nd->iw + 2u * nd->pd < nd->k || nd->rank != 3)
        return SLT_E_SHAPE;
    /* ih, iw <= 2^26 and pd <= 255 here: 32-bit arithmetic is exact */
    if (!shape_is(nd, 3, nd->d[0], (nd->ih + 2u * nd->pd - nd->k) / nd->st + 1u,
                  (nd->iw + 2u * nd->pd - nd->k) / nd->st + 1u))
        return SLT_E_SHAPE;
    if ((uint64_t)nd->ci * nd->k * nd->k > MAX_ELEMS) return SLT_E_SHAPE;
    nd->rows = nd->ci * nd->k * nd->k;
    nd->cols = nd->d[0];
    return SLT_OK;
}

/* affine geometry: rows = input features, cols = output features (per token when ntok) */
static int affine_geometry(slt_node *nd, const slt_node *x, const uint32_t *w) {
    nd->din = w[6]; nd->ntok = w[7];
    if (w[8] || w[9]) return SLT_E_NODE;
    if (nd->ntok) {
        if (!shape_is(x, 2, nd->ntok, nd->din, 0)) return SLT_E_SHAPE;
        if (!shape_is(nd, 2, nd->ntok, nd->d[nd->rank - 1], 0)) return SLT_E_SHAPE;
    } else {
        if (!shape_is(x, 1, nd->din, 0, 0)) return SLT_E_SHAPE;
        if (nd->rank != 1) return SLT_E_SHAPE;
    }
    if (nd->din > MAX_ELEMS) return SLT_E_SHAPE;
    nd->rows = nd->din;
    nd->cols = nd->d[nd->rank - 1];
    return SLT_OK;
}

/* the mask (bitmap or index deltas): encoding fields and its section */
static int synapse_mask(parse_ctx *c, slt_node *nd, const uint32_t *w, uint64_t total) {
    uint64_t nb;
    uint32_t encw = w[11];
    nd->kept = w[10]; nd->nsym = w[12];
    nd->enc = encw & 0xFFu; nd->bits = (encw >> 8) & 0xFFu;
    if ((encw >> 16) || nd->enc > 1) return SLT_E_NODE;
    if (nd->kept > total) return SLT_E_STREAM;
    if (nd->enc == 0) {
        if (nd->bits || nd->nsym) return SLT_E_NODE;
        nb = (total + 7u) >> 3;
    } else {
        if (nd->bits < 1 || nd->bits > MAX_DELTA_BITS) return SLT_E_NODE;
        if (nd->nsym < nd->kept || nd->nsym > 2u * MAX_ELEMS) return SLT_E_STREAM;
        nb = ((uint64_t)nd->nsym * nd->bits + 7u) >> 3;
    }
    if (!region(c, w[13], nb, 1)) return SLT_E_SECTION;
    nd->mask = c->pl + w[13];
    return SLT_OK;
}

/* binary: sign bits, then per-channel scale (>= 0) and bias */
static int binary_values(parse_ctx *c, slt_node *nd, const uint32_t *w) {
    uint64_t sb = ((uint64_t)nd->kept + 7u) >> 3, q, o = nd->cols;
    if (!region(c, w[14], sb, 1)) return SLT_E_SECTION;
    nd->vals = c->pl + w[14];
    for (q = nd->kept; q < sb * 8u; q++)
        if (bit_at(nd->vals, q)) return SLT_E_STREAM;
    if (!region(c, w[15], 8u * o, 1)) return SLT_E_SECTION;
    nd->params = c->pl + w[15];
    for (q = 0; q < 2u * o; q++) {
        uint32_t u = rd32(nd->params + 4u * q);
        if (!finite_bits(u)) return SLT_E_VALUE;
        if (q < o && !(as_f32(u) >= 0.0f)) return SLT_E_VALUE;
    }
    return SLT_OK;
}

/* float: kept values (finite, nonzero), then the bias */
static int float_values(parse_ctx *c, slt_node *nd, const uint32_t *w) {
    uint64_t q, o = nd->cols;
    if (!region(c, w[14], 4u * (uint64_t)nd->kept, 1)) return SLT_E_SECTION;
    nd->vals = c->pl + w[14];
    for (q = 0; q < nd->kept; q++) {
        uint32_t u = rd32(nd->vals + 4u * q);
        if (!finite_bits(u) || (u & 0x7FFFFFFFu) == 0) return SLT_E_VALUE;
    }
    if (!region(c, w[15], 4u * o, 1)) return SLT_E_SECTION;
    nd->params = c->pl + w[15];
    for (q = 0; q < o; q++)
        if (!finite_bits(rd32(nd->params + 4u * q))) return SLT_E_VALUE;
    return SLT_OK;
}

/* node j's output is spikes: a LIF, possibly behind single-input flattens (records before the current one:
 * validated) */
static int spikes_rec(const uint8_t *pl, uint32_t j) {
    while (j != 0 && pl[(size_t)j * RECORD_SIZE] == OP_FLATTEN && pl[(size_t)j * RECORD_SIZE + 1] == 1)
        j = rd32(pl + (size_t)j * RECORD_SIZE + 4) & 0xFFFFu;
    return j != 0 && pl[(size_t)j * RECORD_SIZE] == OP_LIF;
}

/* A binary affine layer reading spikes gets the popcount kernel (affine_pop) beside the event kernel when its
 * weights are dense enough for it to win at some input rate: per output column it ANDs the step's spike bits with
 * the column's +1 and -1 weight bits, 32 inputs per word, where the event kernel pays one scattered add per kept
 * weight of every spiking input. At input rate r the events cost ~ r * kept * POP_EV, the words ~ cols * words *
 * r' (r' the nonzero words' fraction); kept weights denser than 1 in POP_MIN_DENSITY of the matrix can win. */
#define POP_MIN_DENSITY 16u
static int pop_pays(const slt_node *nd) {
    return nd->op == OP_AFFINE && (nd->flags & F_BINARY) && nd->din <= (1u << 21) && nd->din >= 32u &&
           (uint64_t)nd->kept * POP_MIN_DENSITY >= (uint64_t)nd->cols * nd->din;
}

/* conv / affine: geometry, mask, values, then the row table and column index built from the stream */
static int parse_synapse(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    uint64_t total;
    int e = nd->op == OP_CONV ? conv_geometry(nd, x, w) : affine_geometry(nd, x, w);
    if (e) return e;
    total = (uint64_t)nd->rows * nd->cols;
    if (total > MAX_ELEMS) return SLT_E_SHAPE;
    if ((e = synapse_mask(c, nd, w, total)) != 0) return e;
    if ((e = (nd->flags & F_BINARY) ? binary_values(c, nd, w) : float_values(c, nd, w)) != 0) return e;
    {
        uint32_t *rt = (uint32_t *)take(c, sizeof(uint32_t) * ((size_t)nd->rows + 1u));
        uint16_t *ci = (uint16_t *)take(c, sizeof(uint16_t) * (size_t)nd->kept);
        e = check_stream(nd, rt, ci, (nd->flags & F_BINARY) ? nd->params : 0);
        if (e) return e;
        nd->rowtab = rt;
        nd->colidx = ci;
        if ((nd->flags & F_BINARY) && nd->cols <= 32768u) {
            nd->sgncol = 1;
            if (ci) {
                uint32_t q;
                for (q = 0; q < nd->kept; q++) ci[q] = (uint16_t)((uint32_t)ci[q] << 1 | bit_at(nd->vals, q));
            }
        }
        if (nd->n_in == 1 && pop_pays(nd) && spikes_rec(c->pl, nd->in[0])) {
            const uint32_t words = (nd->din + 31u) / 32u;
            uint32_t *pm = (uint32_t *)take(c, sizeof(uint32_t) * 2u * (size_t)nd->cols * words);
            nd->sb = (uint32_t *)take(c, sizeof(uint32_t) * (size_t)words);
            nd->sw = (uint16_t *)take(c, sizeof(uint16_t) * (size_t)words);
            nd->pwords = words;
            if (pm && rt && ci) {
                const size_t half = (size_t)nd->cols * words;
                uint32_t i, q;
                for (q = 0; q < 2u * half; q++) pm[q] = 0;
                for (i = 0; i < nd->din; i++)
                    for (q = rt[i]; q < rt[i + 1]; q++) {
                        const uint32_t col = nd->sgncol ? (uint32_t)ci[q] >> 1 : ci[q];
                        const uint32_t pos = nd->sgncol ? ci[q] & 1u : bit_at(nd->vals, q);
                        pm[(pos ? 0 : half) + (size_t)col * words + i / 32u] |= 1u << (i % 32u);
                    }
            }
            nd->pm = pm;
        }
    }
    return SLT_OK;
}

static int parse_lif(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    if (!same_shape(nd, x)) return SLT_E_SHAPE;
    if (!finite_bits(w[6]) || !finite_bits(w[7])) return SLT_E_VALUE;
    nd->beta = as_f32(w[6]);
    nd->thr = as_f32(w[7]);
    if (!(nd->beta >= 0.0f && nd->beta <= 1.0f)) return SLT_E_VALUE;
    {
        int te = text_ok(c, w[8], w[9], 0);
        if (te != SLT_OK) return te;
    }
    nd->spike_off = c->spike_total;
    c->spike_total += nd->size;
    return SLT_OK;
}

static int parse_flatten(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    uint64_t px = (uint64_t)x->d[0] * (x->rank > 1 ? x->d[1] : 1u) * (x->rank > 2 ? x->d[2] : 1u);
    (void)c; (void)w;
    if (nd->rank != 1 || nd->d[0] != px) return SLT_E_SHAPE;
    return SLT_OK;
}

static int parse_add(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    (void)c; (void)w;
    return same_shape(nd, x) ? SLT_OK : SLT_E_SHAPE;
}

static int parse_output(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    (void)c; (void)w;
    if (!same_shape(nd, x)) return SLT_E_SHAPE;
    return nd->rank == 1 ? SLT_OK : SLT_E_SHAPE;
}

static int parse_input(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    (void)c; (void)x; (void)w;
    return nd->rank == 3 ? SLT_OK : SLT_E_SHAPE;
}

static int parse_tokens(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    (void)c; (void)w;
    if (x->rank != 3) return SLT_E_SHAPE;
    return shape_is(nd, 2, (uint64_t)x->d[1] * x->d[2], x->d[0], 0) ? SLT_OK : SLT_E_SHAPE;
}

static int parse_patch(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    uint32_t cnt = w[6], q, prev = 0;
    if (x->rank != 2 || cnt < 1 || cnt > x->d[0]) return SLT_E_SHAPE;
    if (!region(c, w[7], 4u * (uint64_t)cnt, 1)) return SLT_E_SECTION;
    nd->index = c->pl + w[7];
    for (q = 0; q < cnt; q++) {
        uint32_t v = rd32(nd->index + 4u * q);
        if ((q && v <= prev) || v >= x->d[0]) return SLT_E_VALUE;
        prev = v;
    }
    return shape_is(nd, 2, cnt, x->d[1], 0) ? SLT_OK : SLT_E_SHAPE;
}

static int parse_attn(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    (void)c;
    if (x->rank != 2) return SLT_E_NODE;
    nd->heads = w[6];
    if (nd->heads < 1 || nd->heads > x->d[1] || x->d[1] % nd->heads || !finite_bits(w[7])) return SLT_E_VALUE;
    nd->ascale = as_f32(w[7]);
    return same_shape(nd, x) ? SLT_OK : SLT_E_SHAPE;
}

static int parse_toksum(parse_ctx *c, slt_node *nd, const slt_node *x, const uint32_t *w) {
    (void)c; (void)w;
    if (x->rank != 2) return SLT_E_SHAPE;
    return shape_is(nd, 1, x->d[1], 0, 0) ? SLT_OK : SLT_E_SHAPE;
}

static const parse_fn PARSE[N_OPS] = {
    parse_input, parse_synapse, parse_synapse, parse_lif, parse_flatten, parse_add, parse_tokens, parse_patch,
    parse_attn, parse_toksum, parse_output,
};

#if SLT_SIMD
/* SIMD builds: a single-input conv gets its input as zero-padded phase planes and its accumulators as rows of the
 * planes' width, so each kept weight is one long unit-stride loop (conv_staged). Plane (ci, ry, rx) holds input
 * (ci, st*u + ry, st*v + rx) at (u + qneg, v + qneg), zero where that is outside the input; output (oy, ox) of
 * packing row (ci, ky, kx) reads it at (oy + qy, ox + qx) with ky - pd = st*qy + ry (floor division), i.e. at flat
 * offset (qy + qneg) * pw + qx + qneg + oy * pw + ox. Columns ox >= wo of an accumulator row are never read.
 * The borders are zeroed here and never written again. Speed only: skipped (the row kernels run) when the planes
 * would be large. */
static void stage_buffers(parse_ctx *c, slt_node *nd) {
    const uint32_t st = nd->st, qneg = (nd->pd + st - 1u) / st, span = qneg + (nd->k - 1u - nd->pd) / st;
    const uint64_t ho = nd->d[1], wo = nd->d[2], pw = wo + span;
    /* a plane has (ho + span) rows of pw <= span * pw + lb floats; reads reach span * pw + span + lb - 1 */
    const uint64_t lb = (ho * pw + 7u) & ~(uint64_t)7u, ps = (span * pw + span + lb + 7u) & ~(uint64_t)7u;
    const uint64_t planes = (uint64_t)nd->ci * st * st * ps, accs = (uint64_t)nd->cols * lb;
    if (st > 4u || nd->k > 16u || planes > (1u << 22) || accs > (1u << 22)) return;
    nd->qneg = qneg;
    nd->pw = (uint32_t)pw;
    nd->ps = (uint32_t)ps;
    nd->lb = (uint32_t)lb;
    nd->stage = (float *)take(c, sizeof(float) * (size_t)planes);
    nd->acc = (float *)take(c, sizeof(float) * (size_t)accs);
    nd->cvalid = (uint32_t *)take(c, sizeof(uint32_t) * (size_t)lb);
    if (nd->stage && nd->acc && nd->cvalid) {
        size_t i;
        for (i = 0; i < (size_t)planes; i++) nd->stage[i] = 0.0f;
        for (i = 0; i < (size_t)lb; i++) nd->cvalid[i] = i < ho * pw && i % pw < wo;
    }
}
#endif

/* buffers: every node but input/output owns an output buffer, except a single-input LIF or flatten whose input
 * node (not the model input) has no other consumer: it works in place in that node's buffer (the values are read
 * and written element by element). LIF nodes also own their membrane state. */
static void assign_buffers(parse_ctx *c, slt_node *nodes, uint32_t n_nodes, slt_node *nd) {
    if ((nd->op == OP_LIF || nd->op == OP_FLATTEN) && nd->n_in == 1 && nd->in[0] != 0 &&
        consumers(c->pl, n_nodes, nd->in[0]) == 1 && !(nd->op == OP_LIF && keeps_buffer(c->pl, n_nodes, nd->in[0]))) {
        if (c->arena) {
            nd->out = nodes[nd->in[0]].out;
            if (nd->op == OP_LIF && nodes[nd->in[0]].op == OP_CONV) {
                nd->fused = 1;                   /* its input's only reader: y = acc*scale + bias on the fly */
                nodes[nd->in[0]].defer = 1;
            }
        }
    } else if (nd->op != OP_INPUT && nd->op != OP_OUTPUT) {
        nd->out = (float *)take(c, sizeof(float) * (size_t)nd->size);
    }
    if (nd->op == OP_LIF) nd->v = (float *)take(c, sizeof(float) * (size_t)nd->size);
#if SLT_SIMD
    if (nd->op == OP_CONV && nd->n_in == 1) stage_buffers(c, nd);
#endif
    if (nd->op == OP_CONV || nd->op == OP_AFFINE) {
        uint32_t k;
        nd->reuse = 1;
        nd->rate = 64;   /* a quarter of the inputs nonzero until a step has measured it */
        for (k = 0; k < nd->n_in; k++)
            if (nd->in[k] != 0) nd->reuse = 0;
    }
}

/* one pass that validates everything; with c->arena it also builds the model */
static int parse(const uint8_t *file, size_t len, unsigned flags, parse_ctx *c, slt_model **out) {
    uint32_t n_nodes = 0, T = 0, i;
    slt_model *m;
    slt_node *nodes;
    uint64_t all_elems = 0;
    int e = parse_header(file, len, flags, c, &n_nodes, &T);
    if (e) return e;
    c->spike_total = 0;
    m = (slt_model *)take(c, sizeof(slt_model));
    nodes = (slt_node *)take(c, sizeof(slt_node) * (size_t)n_nodes);
    for (i = 0; i < n_nodes; i++) {
        uint32_t w[16], k;
        slt_node nd, x;
        for (k = 0; k < 16; k++) w[k] = rd32(c->pl + (size_t)i * RECORD_SIZE + 4u * k);
        if ((e = parse_record(i, n_nodes, w, &nd)) != 0) return e;
        all_elems += nd.size;
        if (all_elems > MAX_TOTAL_ELEMS) return SLT_E_SHAPE;
        if ((e = parse_inputs(c, &nd, w, &x)) != 0) return e;
        if ((e = PARSE[nd.op](c, &nd, &x, w)) != 0) return e;
        assign_buffers(c, nodes, n_nodes, &nd);
        if (c->arena) copy_node(&nodes[i], &nd);
    }
    if ((e = text_ok(c, rd32(file + 48), rd32(file + 52), 0)) != SLT_OK) return e;
    if ((e = text_ok(c, rd32(file + 56), rd32(file + 60), 1)) != SLT_OK) return e;
    if (c->arena) {
        if (c->used > c->cap) return SLT_E_ARG;
        m->payload = c->pl;
        m->n_nodes = n_nodes;
        m->T = T;
        m->nodes = nodes;
        m->in_size = nodes[0].size;
        m->n_classes = nodes[n_nodes - 1].size;
        m->spike_count = c->spike_total;
        m->events = 0;
        *out = m;
    }
    return SLT_OK;
}

/* ------------------------------------------------------------------------------------------------------------ */
int slt_arena_size(const uint8_t *file, size_t len, unsigned flags, size_t *arena_bytes) {
    parse_ctx c;
    int e;
    if (!arena_bytes) return SLT_E_ARG;
    c.arena = 0; c.used = 0; c.cap = 0;
    e = parse(file, len, flags, &c, 0);
    if (e == SLT_OK) *arena_bytes = c.used;
    return e;
}

int slt_open(const uint8_t *file, size_t len, unsigned flags, void *arena, size_t arena_bytes, slt_model **out) {
    parse_ctx c;
    size_t need;
    int e;
    if (!arena || !out || ((uintptr_t)arena & 7u)) return SLT_E_ARG;
    e = slt_arena_size(file, len, flags, &need);
    if (e) return e;
    if (arena_bytes < need) return SLT_E_ARG;
    c.arena = (uint8_t *)arena; c.used = 0; c.cap = arena_bytes;
    return parse(file, len, flags, &c, out);
}

uint32_t slt_T(const slt_model *m) { return m->T; }
uint32_t slt_input_size(const slt_model *m) { return m->in_size; }
uint32_t slt_n_classes(const slt_model *m) { return m->n_classes; }
uint32_t slt_spike_count(const slt_model *m) { return m->spike_count; }
uint64_t slt_events(const slt_model *m) { return m->events; }

/* ------------------------------------------------------------------------------------------------------------ */
/* execution */

static const float *node_out(const slt_model *m, uint32_t idx, const float *input) {
    return idx == 0 ? input : m->nodes[idx].out;
}

/* value of element e of a node's (summed) input, summed in record order */
static float in_val(const slt_model *m, const slt_node *n, const float *input, uint32_t e) {
    float x = node_out(m, n->in[0], input)[e];
    uint32_t k;
    for (k = 1; k < n->n_in; k++) x = x + node_out(m, n->in[k], input)[e];
    return x;
}

/* dst[e] = in_val(e) for e < count, input by input (the same per-element order: ((in0 + in1) + in2) + ...);
 * dst is the node's own buffer (only single-input LIF / flatten nodes work in place) */
static void sum_inputs(const slt_model *m, const slt_node *n, const float *input, float *dst, uint32_t count) {
    const float *a = node_out(m, n->in[0], input);
    uint32_t e, k;
    if (n->n_in == 1) {
        for (e = 0; e < count; e++) dst[e] = a[e];
        return;
    }
    {
        const float *b = node_out(m, n->in[1], input);
        for (e = 0; e < count; e++) dst[e] = a[e] + b[e];
    }
    for (k = 2; k < n->n_in; k++) {
        const float *c = node_out(m, n->in[k], input);
        for (e = 0; e < count; e++) dst[e] = dst[e] + c[e];
    }
}

/* add x * w for every kept weight kidx in [k0, k1) (one packing row) to out[col * ostride]. The kept weights of a
 * row feed distinct outputs, so their order does not matter; rows are visited in ascending input index.
 * kind (loop-invariant, see syn_kind): 0 binary, sign in colidx; 1 binary, sign bit stream; 2 float; 3 float,
 * x = 1 (spike input). */
/* emit_row (per nonzero input) and conv_span (per conv row) must be inlined into their kind-specialised callers:
 * gcc -O2 for Cortex-M stopped doing it once they grew, and the calls cost 15 % more instructions per frame
 * (QEMU count, full-scale ticket: 3.73 M with calls, 3.24 M inlined; x86 unchanged) */
/* unrolling hints (gcc 8+): the scalar event scans 4x (loop overhead was 4 of the ~7 instructions per input tested;
 * Cortex-M7 QEMU count, full-scale IMP 98 % ticket: 4,079,244 -> 3,998,508 instructions per frame), conv_fixed's
 * per-weight loops fully (its weights then live in registers, not in a stack array walked per input) */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define SLT_UNROLL4 _Pragma("GCC unroll 4")
#define SLT_UNROLL8 _Pragma("GCC unroll 8")
#else
#define SLT_UNROLL4
#define SLT_UNROLL8
#endif
#if defined(__GNUC__)
#define SLT_HOT_INLINE static inline __attribute__((always_inline))
#define SLT_COLD static __attribute__((noinline))   /* kept out of run_synapse's register allocation */
#else
#define SLT_HOT_INLINE static inline
#define SLT_COLD static
#endif

/* emit_row for kinds 0, 2, 3 given the row's kept weights as pointers: colidx [c, ce), values from v (kinds 2, 3;
 * unused for kind 0). A scan loop computes them once per row, not once per nonzero input. */
SLT_HOT_INLINE void emit_span(int kind, const uint16_t *c, const uint16_t *ce, const uint8_t *v, float x, float *out,
                             uint32_t ostride) {
    if (kind == 0) {
        /* sign bit 1: +x, 0: -x, i.e. -x with its sign bit flipped by the weight's (negation is a sign flip) */
        const uint32_t nb = f32_bits(-x);
        for (; c < ce; c++) {
            float *o = out + (size_t)(*c >> 1) * ostride;
            *o = *o + as_f32(nb ^ ((uint32_t)*c << 31));
        }
    } else if (kind == 2) {
        for (; c < ce; c++, v += 4) {
            float *o = out + (size_t)*c * ostride;
            *o = *o + x * rdf(v);
        }
    } else {   /* float weights, spike input: a nonzero x is exactly 1 and 1 * w = w, so no multiply */
        for (; c < ce; c++, v += 4) {
            float *o = out + (size_t)*c * ostride;
            *o = *o + rdf(v);
        }
    }
}

SLT_HOT_INLINE void emit_row(const slt_node *n, int kind, uint32_t k0, uint32_t k1, float x, float *out,
                            uint32_t ostride) {
    if (kind == 1) {
        float xs[2];
        uint32_t kidx;
        xs[0] = -x;
        xs[1] = x;
        for (kidx = k0; kidx < k1; kidx++) {
            float *o = out + (size_t)n->colidx[kidx] * ostride;
            *o = *o + xs[bit_at(n->vals, kidx)];
        }
    } else {
        emit_span(kind, n->colidx + k0, n->colidx + k1, kind == 0 ? n->vals : n->vals + 4u * k0, x, out, ostride);
    }
}

/* node idx outputs spikes (exactly 0.0 or 1.0): a LIF, possibly behind single-input flattens */
static int spike_source(const slt_model *m, uint32_t idx) {
    while (idx != 0 && m->nodes[idx].op == OP_FLATTEN && m->nodes[idx].n_in == 1) idx = m->nodes[idx].in[0];
    return idx != 0 && m->nodes[idx].op == OP_LIF;
}

/* 0 binary, sign in colidx; 1 binary, sign bit stream; 2 float; 3 float reading spikes only (no multiply) */
static int syn_kind(const slt_model *m, const slt_node *n) {
    if (n->sgncol) return 0;
    if (n->flags & F_BINARY) return 1;
    return n->n_in == 1 && spike_source(m, n->in[0]) ? 3 : 2;
}

#if SLT_SIMD
/* lowest set bit of m != 0 (x86: tzcnt, ARMv8: rbit + clz; no library call) */
static uint32_t ctz32(uint32_t m) {
#if defined(__GNUC__)
    return (uint32_t)__builtin_ctz(m);
#else
    uint32_t b = 0;
    while (!(m & 1u)) { m >>= 1; b++; }
    return b;
#endif
}

/* bit j of the result: x[j * st] != 0, for j < cnt <= 32 (branch-free: spike inputs are unpredictable) */
static uint32_t nz_mask(const float *x, uint32_t st, uint32_t cnt) {
    uint32_t m = 0;
    size_t j;
#if defined(__SSE2__)
    if (st == 1u && cnt == 32u) {   /* 4 lanes per compare; unordered (NaN) != 0 is true, as below */
        const __m128 z = _mm_setzero_ps();
        for (j = 0; j < 32u; j += 4u)
            m |= (uint32_t)_mm_movemask_ps(_mm_cmpneq_ps(_mm_loadu_ps(x + j), z)) << j;
        return m;
    }
#endif
    for (j = 0; j < cnt; j++) m |= (uint32_t)(x[j * st] != 0.0f) << j;   /* = nonzero(), NaN included */
    return m;
}
#endif

/* kept weight kidx as a multiplier: binary +1/-1 (x * -1 = -x exactly, the event path's sign flip), float its value */
static float weight_of(const slt_node *n, int kind, uint32_t kidx) {
    if (kind == 0) return (n->colidx[kidx] & 1u) ? 1.0f : -1.0f;
    if (kind == 1) return bit_at(n->vals, kidx) ? 1.0f : -1.0f;
    return rdf(n->vals + 4u * kidx);
}


/* Weight-stationary kernel of one conv packing row: every kept weight of the row times EVERY input it reads,
 * zeros included, as a branch-free loop. Exact: for a zero input x * w is +-0 and acc + (+-0) = acc (an
 * accumulator starts at +0 and a sum of finite floats is never -0 in round-to-nearest, so no sign changes), and
 * each accumulator still receives its terms in ascending row order. Pays k MACs per input instead of a test,
 * a mispredicted branch and k scattered adds per nonzero input. Returns the nonzero inputs (counted in the
 * first weight's pass). */
static inline uint32_t conv_ws(const slt_node *n, int kind, const float *x, uint32_t st, uint32_t ystep,
                               uint32_t cnt, uint32_t rows, float *orow, uint32_t wo, uint32_t k0, uint32_t k1,
                               uint32_t per) {
    uint32_t i, kidx, nz = 0;
    size_t j;   /* not uint32_t: j * st must not wrap, or the compiler cannot vectorize the strided loads */
    for (kidx = k0; kidx < k1; kidx++) {
        const float w = weight_of(n, kind, kidx);
        /* the input and output buffers are different nodes' (restrict: no run-time alias checks per row) */
        float *restrict oc = orow + (size_t)(kind == 0 ? n->colidx[kidx] >> 1 : n->colidx[kidx]) * per;
        const float *restrict xr = x;
        if (kidx == k0)
            for (i = 0; i < rows; i++, xr += ystep, oc += wo)
                for (j = 0; j < cnt; j++) {
                    const float xv = xr[j * st];
                    nz += (uint32_t)(xv != 0.0f);   /* = nonzero(xv), NaN included; vectorizable */
                    oc[j] = oc[j] + xv * w;
                }
        else
            for (i = 0; i < rows; i++, xr += ystep, oc += wo)
                for (j = 0; j < cnt; j++) oc[j] = oc[j] + xr[j * st] * w;
    }
    return nz;
}

#if !SLT_SIMD
/* The scalar event scan of a packing row: every input of output row i < rows, column j < cnt, tested with one branch
 * (Cortex-M: instructions are the cost, branches are cheap); EMIT (a statement on xb, the input's bits, and o, its
 * output in the row's first output channel at OUT0) for each nonzero one, counted in nz. */
#define EVENT_SCAN(OUT0, EMIT)                                                                                \
    for (i = 0; i < rows; i++, x += ystep, OUT0 += wo) {                                                     \
        const float *xr = x;                                                                                 \
        SLT_UNROLL4                                                                                          \
        for (j = 0; j < cnt; j++, xr += st) {                                                                \
            const uint32_t xb = bits_at(xr);                                                                 \
            if (kind == 3 ? xb != 0 : xb << 1) { /* kind 3 reads spikes: never -0 */                         \
                float *const o = OUT0 + j;                                                                   \
                nz++;                                                                                        \
                EMIT;                                                                                        \
            }                                                                                                \
        }                                                                                                    \
    }

/* The scalar event kernel of KK (1-8, a constant) kept weights of a packing row, float (kinds 2, 3) or binary signs
 * on spike inputs (kind 0): the weights and their output offsets are loaded once per row into registers, so a
 * nonzero input costs KK loads, adds and stores (no index or value loads). Each weight feeds its own output
 * channel: the same terms in the same order as emit_row. */
SLT_HOT_INLINE uint32_t conv_fixed(const slt_node *n, int kind, uint32_t KK, const float *x, uint32_t st,
                                   uint32_t ystep, uint32_t cnt, uint32_t rows, float *orow, uint32_t wo, uint32_t k0,
                                   uint32_t per) {
    float w[8];
    size_t off[8];
    uint32_t i, j, q, nz = 0;
    SLT_UNROLL8
    for (q = 0; q < KK; q++) {
        const uint32_t c = n->colidx[k0 + q];
        /* kind 0 (only with spike inputs): the +-1 the sign flip of x = 1 gives */
        w[q] = kind == 0 ? ((c & 1u) ? 1.0f : -1.0f) : rdf(n->vals + 4u * (k0 + q));
        off[q] = (size_t)(kind == 0 ? c >> 1 : c) * per;
    }
    EVENT_SCAN(orow, SLT_UNROLL8 for (q = 0; q < KK; q++) o[off[q]] = o[off[q]] + (kind != 2 ? w[q] : as_f32(xb) * w[q]))
    return nz;
}
#endif

/* one conv packing row over its valid outputs: for output row i < rows and column j < cnt, input
 * x[i * ystep + j * st] feeds outputs orow[i * wo + j] + col * per through the kept weights [k0, k1). Returns the
 * number of nonzero inputs (events = that times k1 - k0). ws: the weight-stationary kernel (conv_ws), else the
 * event kernel: per nonzero input, found 32 at a time through a branch-free bit mask, k scattered adds. */
#if !SLT_SIMD
/* conv_fixed for a row's weights [k0, k1), at most 8 at a time (each chunk scans the row's inputs again: cheaper
 * than the general loop's ~10 instructions per weight of every nonzero input); returns the nonzero inputs */
SLT_HOT_INLINE uint32_t conv_chunks(const slt_node *n, int kind, const float *x, uint32_t st, uint32_t ystep,
                                    uint32_t cnt, uint32_t rows, float *orow, uint32_t wo, uint32_t k0, uint32_t k1,
                                    uint32_t per) {
    uint32_t k = k0, nz = 0;
    while (k < k1) {
        const uint32_t kk = k1 - k < 8u ? k1 - k : 8u;
        switch (kk) {
        case 1u: nz = conv_fixed(n, kind, 1u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 2u: nz = conv_fixed(n, kind, 2u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 3u: nz = conv_fixed(n, kind, 3u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 4u: nz = conv_fixed(n, kind, 4u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 5u: nz = conv_fixed(n, kind, 5u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 6u: nz = conv_fixed(n, kind, 6u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        case 7u: nz = conv_fixed(n, kind, 7u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        default: nz = conv_fixed(n, kind, 8u, x, st, ystep, cnt, rows, orow, wo, k, per); break;
        }
        k += kk;
    }
    return nz;
}
#endif

SLT_HOT_INLINE uint32_t conv_span(const slt_node *n, int kind, int ws, int spk, const float *x, uint32_t st,
                                  uint32_t ystep, uint32_t cnt, uint32_t rows, float *orow, uint32_t wo,
                                  uint32_t k0, uint32_t k1, uint32_t per) {
    uint32_t i, j, nz = 0;
    (void)spk;   /* scalar builds only */
    if (ws) {
        if (st == 1) return conv_ws(n, kind, x, 1, ystep, cnt, rows, orow, wo, k0, k1, per);  /* constant strides */
        if (st == 2) return conv_ws(n, kind, x, 2, ystep, cnt, rows, orow, wo, k0, k1, per);
        return conv_ws(n, kind, x, st, ystep, cnt, rows, orow, wo, k0, k1, per);
    }
#if !SLT_SIMD
    if (k1 - k0 == 1 && kind != 1) {
        /* a single kept weight (the common case in a sparse ticket): one output channel, no inner loop */
        float *oc = orow + (size_t)(n->colidx[k0] >> (kind == 0 ? 1 : 0)) * per;
        const uint32_t flip = kind == 0 ? (~(uint32_t)n->colidx[k0] & 1u) << 31 : 0u;   /* sign bit 0: -x */
        const float w = kind == 0 ? 1.0f : rdf(n->vals + 4u * k0);
        EVENT_SCAN(oc, *o = *o + (kind == 0 ? as_f32(xb ^ flip) : kind == 3 ? w : as_f32(xb) * w))   /* kind 3: x = 1 */
        return nz;
    }
    if (kind >= 2 || (kind == 0 && spk))   /* float weights, or signs on spikes: in registers, 8 at a time */
        return conv_chunks(n, kind, x, st, ystep, cnt, rows, orow, wo, k0, k1, per);
    {   /* kind 1, or kind 0 on non-spike inputs: the row's kept weights as pointers, once per row */
        const uint16_t *cb = n->colidx + k0, *ce = n->colidx + k1;
        const uint8_t *vb = n->vals;   /* kind 0: the signs are in colidx */
        EVENT_SCAN(orow, if (kind == 1) emit_row(n, kind, k0, k1, as_f32(xb), o, per);
                         else emit_span(kind, cb, ce, vb, as_f32(xb), o, per))
    }
#else
    for (i = 0; i < rows; i++, x += ystep, orow += wo) {
        uint32_t j0;
        for (j0 = 0; j0 < cnt; j0 += 32u) {
            uint32_t m = nz_mask(x + j0 * st, st, cnt - j0 < 32u ? cnt - j0 : 32u);
            while (m) {
                j = j0 + ctz32(m);
                m &= m - 1u;
                nz++;
                emit_row(n, kind, k0, k1, x[j * st], orow + j, per);
            }
        }
    }
#endif
    return nz;
}

/* one token row of an affine layer: inputs x[i] (i < din) through packing rows i into out[col]; returns events.
 * The nonzero inputs are found 32 at a time through a branch-free bit mask, in ascending i. */
static uint64_t affine_span(const slt_node *n, int kind, const float *x, uint32_t din, float *out) {
    const uint32_t *rowtab = n->rowtab;
    uint64_t ev = 0;
#if !SLT_SIMD
    uint32_t i;
    for (i = 0; i < din; i++) {   /* scalar builds: one test and branch per input (see the kernel choice) */
        const uint32_t xb = bits_at(x + i);
        uint32_t k0, k1;
        if (kind == 3 ? xb == 0 : !(xb << 1)) continue;   /* kind 3 reads spikes: never -0 */
        k0 = rowtab[i];
        k1 = rowtab[i + 1];
        if (k0 == k1) continue;
        emit_row(n, kind, k0, k1, as_f32(xb), out, 1u);
        ev += k1 - k0;
    }
#else
    uint32_t i0;
    for (i0 = 0; i0 < din; i0 += 32u) {
        uint32_t m = nz_mask(x + i0, 1u, din - i0 < 32u ? din - i0 : 32u);
        while (m) {
            const uint32_t i = i0 + ctz32(m), k0 = rowtab[i], k1 = rowtab[i + 1];
            m &= m - 1u;
            if (k0 == k1) continue;
            emit_row(n, kind, k0, k1, x[i], out, 1u);
            ev += k1 - k0;
        }
    }
#endif
    return ev;
}

#if SLT_SIMD
/* acc[f] += x[f] * w for f < lb (a multiple of 8): one kept weight over a whole (padded) output plane; with cv (the row's first weight) returns the nonzero x[f] at real
 * outputs (cv[f] = 1). Exact like conv_ws: a zero or padding input adds +-0 to an accumulator that is never -0,
 * and every accumulator gets its terms in ascending packing row. */
SLT_HOT_INLINE uint32_t plane_mac(float *restrict acc, const float *restrict x, size_t lb, float w,
                                  const uint32_t *restrict cv) {
    size_t f;
    uint32_t nz = 0;
    if (cv)
        for (f = 0; f < lb; f++) {
            nz += cv[f] & (uint32_t)(x[f] != 0.0f);
            acc[f] = acc[f] + x[f] * w;
        }
    else
        for (f = 0; f < lb; f++) acc[f] = acc[f] + x[f] * w;
    return nz;
}

/* d0[v] = x[2v], d1[v] = x[2v + 1] for v < n (gcc does not vectorize the plain loop) */
static void deinterleave2(const float *restrict x, float *restrict d0, float *restrict d1, uint32_t n) {
    uint32_t v = 0;
#if defined(__SSE2__)
    for (; v + 4u <= n; v += 4u) {
        const __m128 a = _mm_loadu_ps(x + 2u * v), b = _mm_loadu_ps(x + 2u * v + 4u);
        _mm_storeu_ps(d0 + v, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_storeu_ps(d1 + v, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
    }
    if (v < n && n >= 4u) {   /* the last 4 again, overlapping (the same values): no scalar tail */
        const __m128 a = _mm_loadu_ps(x + 2u * (n - 4u)), b = _mm_loadu_ps(x + 2u * (n - 4u) + 4u);
        _mm_storeu_ps(d0 + n - 4u, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_storeu_ps(d1 + n - 4u, _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)));
        return;
    }
#elif defined(__ARM_NEON) || defined(__aarch64__)
    for (; v + 4u <= n; v += 4u) {
        const float32x4x2_t ab = vld2q_f32(x + 2u * v);
        vst1q_f32(d0 + v, ab.val[0]);
        vst1q_f32(d1 + v, ab.val[1]);
    }
#endif
    for (; v < n; v++) { d0[v] = x[2u * v]; d1[v] = x[2u * v + 1u]; }
}

/* o[j] = a[j], j < n (restrict: no run-time overlap check per row) */
static void copy_row(float *restrict o, const float *restrict a, uint32_t n) {
    uint32_t j;
    for (j = 0; j < n; j++) o[j] = a[j];
}

/* a single-input conv through its staged planes (stage_buffers): copy the input's used channels into the planes,
 * one long loop per kept weight, then the accumulator rows [0, wo) into out. Returns the synaptic events. */
static uint64_t conv_staged(const slt_node *n, int kind, const float *x, float *out) {
    const uint32_t st = n->st, k = n->k, pd = n->pd, ih = n->ih, iw = n->iw, ho = n->d[1], wo = n->d[2];
    const uint32_t pw = n->pw, ps = n->ps, qneg = n->qneg, kk2 = k * k, uy = ho - 1u + (k - 1u - pd) / st + 1u;
    const size_t len = n->lb, per = (size_t)ho * wo;
    const uint32_t *rowtab = n->rowtab;
    float *acc = n->acc;
    uint64_t ev = 0;
    uint32_t ci, iy, ix, ky, kx, oy;
    size_t f;
    for (f = 0; f < len * n->cols; f++) acc[f] = 0.0f;
    for (ci = 0; ci < n->ci; ci++) {
        const float *xc = x + (size_t)ci * ih * iw;
        float *pc = n->stage + (size_t)ci * st * st * ps;
        uint32_t r = ci * kk2;
        if (rowtab[r] == rowtab[r + kk2]) continue;   /* no kept weight reads this channel */
        uint32_t ry = 0, u = 0;   /* iy = st * u + ry */
        for (iy = 0; iy < ih && u < uy; iy++) {  /* input rows past the last one any output reads: unused */
            const float *xr = xc + (size_t)iy * iw;
            float *prow = pc + (size_t)ry * st * ps + (size_t)(u + qneg) * pw + qneg;
            if (++ry == st) { ry = 0; u++; }
            uint32_t v, nv = iw / st;   /* full groups of st input columns: one per plane column */
            if (nv > pw - qneg) nv = pw - qneg;
            if (st == 1) {
                for (v = 0; v < nv; v++) prow[v] = xr[v];
            } else if (st == 2) {   /* deinterleave even/odd columns into the two phase planes */
                deinterleave2(xr, prow, prow + ps, nv);
            } else {
                for (ix = 0; ix < st; ix++)
                    for (v = 0; v < nv; v++) prow[(size_t)ix * ps + v] = xr[(size_t)v * st + ix];
            }
            for (ix = nv * st; ix < iw && ix / st < pw - qneg; ix++)   /* a last partial group */
                prow[(size_t)(ix % st) * ps + ix / st] = xr[ix];
        }
        for (ky = 0; ky < k; ky++) {
            const uint32_t dy = ky + st * qneg - pd;   /* = st * (qy + qneg) + ry >= 0 */
            for (kx = 0; kx < k; kx++, r++) {
                const uint32_t k0 = rowtab[r], k1 = rowtab[r + 1], dx = kx + st * qneg - pd;
                const float *xp;
                uint32_t kidx;
                if (k0 == k1) continue;
                xp = pc + (size_t)((dy % st) * st + dx % st) * ps + (size_t)(dy / st) * pw + dx / st;
                for (kidx = k0; kidx < k1; kidx++) {
                    const uint32_t col = kind == 0 ? n->colidx[kidx] >> 1 : n->colidx[kidx];
                    const uint32_t nz = plane_mac(acc + (size_t)col * len, xp, len, weight_of(n, kind, kidx),
                                                  kidx == k0 ? n->cvalid : 0);
                    if (kidx == k0) ev += (uint64_t)nz * (k1 - k0);
                }
            }
        }
    }
    for (ci = 0; ci < n->cols; ci++)
        for (oy = 0; oy < ho; oy++)
            copy_row(out + (size_t)ci * per + (size_t)oy * wo, acc + (size_t)ci * len + (size_t)oy * pw, wo);
    return ev;
}
#endif

/* one token of a binary affine layer reading spikes, through its weight bits (pop_pays): output column c gets
 * (spiking inputs with a +1 weight) - (spiking inputs with a -1 weight), counted 32 inputs per word. That is exactly
 * the event kernel's float sum of +-1 terms in any order (integers below 2^24; no terms or a zero sum: +0), and
 * the events (spiking input x kept weight pairs) are the two counts' sum. Only the words with a spike are read. */
static uint32_t popcount32(uint32_t v) {
#if defined(__GNUC__) && defined(__POPCNT__)
    return (uint32_t)__builtin_popcount(v);
#else
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    v = (v + (v >> 4)) & 0x0F0F0F0Fu;
    return (v * 0x01010101u) >> 24;
#endif
}

/* The kernel for this step, by the last step's input rate (rate x 255; events / kept weights after the event
 * kernel): events ~ din * AEV_SCAN + rate * (din * AEV_NZ + kept * AEV_ADD), words ~ din * POP_PACK + cols *
 * words * POP_WORD (every word read). Instructions of gcc -O2/-O3, counted; the choice changes no result bit. */
#if SLT_SIMD
#define AEV_SCAN 2u
#define AEV_NZ 10u
#define AEV_ADD 4u
#define POP_PACK 4u
#define POP_WORD 10u
#else
#define AEV_SCAN 5u
#define AEV_NZ 12u
#define AEV_ADD 10u
#define POP_PACK 4u
#define POP_WORD 32u
#endif
/* num / den x 255, at most 255, in 32-bit division (no 64-bit helper on small cores) */
SLT_COLD uint8_t rate255(uint64_t num, uint64_t den) {
    while (den >> 23) { num >>= 1; den >>= 1; }
    if (!den || num >= den) return 255u;
    return (uint8_t)(((uint32_t)num * 255u) / (uint32_t)den);
}

static int pop_wins(const slt_node *n) {
    const uint64_t ev = (uint64_t)n->din * AEV_SCAN * 255u + (uint64_t)n->rate * ((uint64_t)n->din * AEV_NZ +
                                                                                (uint64_t)n->kept * AEV_ADD);
    const uint64_t pop = ((uint64_t)n->din * POP_PACK + (uint64_t)n->cols * n->pwords * POP_WORD) * 255u;
    return pop < ev;
}

SLT_COLD uint64_t affine_pop(slt_node *n, const float *x, float *out) {
    const uint32_t words = n->pwords, din = n->din, cols = n->cols;
    const size_t half = (size_t)cols * words;
    uint32_t *sb = n->sb;
    uint16_t *sw = n->sw;
    uint32_t w, nw = 0, c, nz = 0;
    uint64_t ev = 0;
    for (w = 0; w < words; w++) {
        const uint32_t base = 32u * w, lim = din - base < 32u ? din - base : 32u;
        uint32_t b = 0, i;
        for (i = 0; i < lim; i++) b |= (uint32_t)(x[base + i] != 0.0f) << i;   /* spikes: 0 or 1, never -0 */
        sb[w] = b;
        if (b) {
            sw[nw++] = (uint16_t)w;
            nz += popcount32(b);
        }
    }
    for (c = 0; c < cols; c++) {
        const uint32_t *pp = n->pm + (size_t)c * words, *nn = pp + half;
        uint32_t cp = 0, cn = 0, q;
        for (q = 0; q < nw; q++) {
            const uint32_t k = sw[q], b = sb[k];
            cp += popcount32(b & pp[k]);
            cn += popcount32(b & nn[k]);
        }
        out[c] = (float)((int32_t)cp - (int32_t)cn);
        ev += (uint64_t)cp + cn;
    }
    n->rate = rate255(nz, din);
    return ev;
}

/* prev: the previous step's input of this sample (NULL at t = 0). A layer reading only the model input computes
 * the same bits from the same input: when every input element equals (==) the previous step's, its buffer still
 * holds the result (nobody writes into it) and only its events are counted again. +0 == -0: both are skipped. */
static void run_synapse(slt_model *m, slt_node *n, const float *input, const float *prev) {
    float *out = n->out;
    uint32_t e;
    const uint32_t o = n->cols;
    const float *x0 = node_out(m, n->in[0], input);
    const int single = n->n_in == 1;
    const uint32_t *rowtab = n->rowtab;
    const int kind = syn_kind(m, n), spk = single && spike_source(m, n->in[0]);   /* spk: inputs are 0/1 */
    uint64_t ev = 0;
    if (n->reuse && prev) {
        const uint32_t sz = m->in_size;
        for (e = 0; e < sz && input[e] == prev[e]; e++) {}
        if (e == sz) { m->events += n->last_ev; return; }
    }
#if SLT_SIMD
    if (n->stage) {
        ev = kind == 0 ? conv_staged(n, 0, x0, out) : kind == 1 ? conv_staged(n, 1, x0, out)
           : kind == 2 ? conv_staged(n, 2, x0, out) : conv_staged(n, 3, x0, out);
        goto done;
    }
#endif
    {   /* acc = +0: four stores per iteration (no memset in the freestanding build) */
        const uint32_t sz = n->size, s4 = sz & ~3u;
        for (e = 0; e < s4; e += 4) { out[e] = 0.0f; out[e + 1] = 0.0f; out[e + 2] = 0.0f; out[e + 3] = 0.0f; }
        for (; e < sz; e++) out[e] = 0.0f;
    }
    if (n->op == OP_CONV) {
        /* Row by row: for packing row r = (ci, ky, kx) with kept weights, every output (oy, ox) it feeds reads input
         * (ci, oy*st + ky - pd, ox*st + kx - pd). For one output element the rows come in ascending r, i.e. its
         * input elements in ascending flat index: the order of section 4 (each row adds one term per output). */
        const uint32_t ho = n->d[1], wo = n->d[2], k = n->k, st = n->st, pd = n->pd, ih = n->ih, iw = n->iw;
        const uint32_t per = ho * wo;
        uint32_t ci, ky, kx, r = 0;
        uint64_t nzs = 0, reads = 0;
        for (ci = 0; ci < n->ci; ci++)
            for (ky = 0; ky < k; ky++) {
                /* oy in [oy0, oy1): 0 <= oy*st + ky - pd < ih */
                const uint32_t oy0 = ky >= pd ? 0u : (pd - ky + st - 1u) / st;
                uint32_t oy1 = ih + pd > ky ? (ih + pd - ky - 1u) / st + 1u : 0u;
                if (oy1 > ho) oy1 = ho;
                for (kx = 0; kx < k; kx++, r++) {
                    const uint32_t k0 = rowtab[r], k1 = rowtab[r + 1];
                    uint32_t ox0, ox1, oy, ox;
                    if (k0 == k1) continue;                      /* most rows of a ticket are empty */
                    ox0 = kx >= pd ? 0u : (pd - kx + st - 1u) / st;
                    ox1 = iw + pd > kx ? (iw + pd - kx - 1u) / st + 1u : 0u;
                    if (ox1 > wo) ox1 = wo;
                    if (ox0 >= ox1) continue;
                    if (oy0 >= oy1) continue;
                    if (single) {
                        /* flat input index of (ci, oy0*st + ky - pd, ox0*st + kx - pd); + st per ox, + st*iw per oy */
                        const float *xr = x0 + (ci * ih + (oy0 * st + ky - pd)) * iw + (ox0 * st + kx - pd);
                        float *os = out + oy0 * wo + ox0;
                        const uint32_t cnt = ox1 - ox0, rows = oy1 - oy0, ys = st * iw;
                        /* kind as a constant: one specialised copy each */
                        /* per row, the cheaper kernel at the last step's input density (cost model above) */
                        const uint32_t kk = k1 - k0,
                                       ws = 255u * (WS_BASE + WS_MAC * kk) <=
                                            255u * EV_SCAN + (uint32_t)n->rate * (EV_NZ + EV_ADD * kk);
                        const uint32_t nz =
                            kind == 0 ? conv_span(n, 0, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per)
                            : kind == 1 ? conv_span(n, 1, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per)
                            : kind == 2 ? conv_span(n, 2, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per)
                                        : conv_span(n, 3, ws, spk, xr, st, ys, cnt, rows, os, wo, k0, k1, per);
                        ev += (uint64_t)nz * kk;
                        nzs += nz;
                        reads += (uint64_t)cnt * rows;
                        continue;
                    }
                    for (oy = oy0; oy < oy1; oy++) {
                        const uint32_t ib = (ci * ih + (oy * st + ky - pd)) * iw + (ox0 * st + kx - pd);
                        float *orow = out + oy * wo;
                        for (ox = ox0; ox < ox1; ox++) {
                            const float x = in_val(m, n, input, ib + (ox - ox0) * st);
                            if (nonzero(x)) { emit_row(n, kind, k0, k1, x, orow + ox, per); ev += k1 - k0; }
                        }
                    }
                }
            }
        while (reads >> 23) { reads >>= 1; nzs >>= 1; }   /* 32-bit division: no 64-bit helper on small cores */
        if (reads) n->rate = (uint8_t)(((uint32_t)nzs * 255u) / (uint32_t)reads);
    } else {
        const uint32_t ntok = n->ntok ? n->ntok : 1u;
        uint32_t t, i;
        for (t = 0; t < ntok; t++) {
            float *ot = out + (size_t)t * o;
            if (single) {
                const float *xt = x0 + (size_t)t * n->din;   /* kind as a constant: one specialised copy each */
                if (n->pm && pop_wins(n)) {
                    ev += affine_pop(n, xt, ot);
                    continue;
                }
                {
                    const uint64_t e1 = kind == 0 ? affine_span(n, 0, xt, n->din, ot)
                                      : kind == 1 ? affine_span(n, 1, xt, n->din, ot)
                                      : kind == 2 ? affine_span(n, 2, xt, n->din, ot)
                                                  : affine_span(n, 3, xt, n->din, ot);
                    ev += e1;
                    if (n->pm) n->rate = rate255(e1, n->kept);
                }
                continue;
            }
            for (i = 0; i < n->din; i++) {
                const uint32_t idx = t * n->din + i, k0 = rowtab[i], k1 = rowtab[i + 1];
                const float x = in_val(m, n, input, idx);
                if (!nonzero(x) || k0 == k1) continue;
                emit_row(n, kind, k0, k1, x, ot, 1u);
                ev += k1 - k0;
            }
        }
    }
#if SLT_SIMD
done:
#endif
    m->events += ev;
    n->last_ev = ev;
    if (n->defer) return;   /* the consumer LIF applies the epilogue (lif_step) */
    /* epilogue: binary y = acc * scale_c + bias_c; float y = acc + bias_c (two roundings, no FMA) */
    {
        const int binary = (n->flags & F_BINARY) != 0;
        const uint8_t *bias = n->params + (binary ? 4u * o : 0u);
        uint32_t c, j;
        if (n->op == OP_CONV) {
            const uint32_t per = n->d[1] * n->d[2];
            for (c = 0; c < o; c++) {
                const float sc = binary ? rdf(n->params + 4u * c) : 1.0f, bi = rdf(bias + 4u * c);
                float *oc = out + (size_t)c * per;
                if (binary)
                    for (j = 0; j < per; j++) { float y = oc[j] * sc; oc[j] = y + bi; }
                else
                    for (j = 0; j < per; j++) oc[j] = oc[j] + bi;
            }
        } else {
            for (c = 0; c < o; c++) {
                const float sc = binary ? rdf(n->params + 4u * c) : 1.0f, bi = rdf(bias + 4u * c);
                for (j = c; j < n->size; j += o) {
                    if (binary) { float y = out[j] * sc; out[j] = y + bi; }
                    else out[j] = out[j] + bi;
                }
            }
        }
    }
}

/* LIF over elements [e0, e0 + cnt) with input current I = IN (an expression of cur[e]); one pass per element
 * (out may be cur: element e is read before it is written). The reference's own arithmetic, branch-free:
 * v = beta*v + I (first step: v = I); s = v > thr; zero: v = v*(1-s); subtract: v = v - s*thr */
#if SLT_SIMD
#define LIF_LOOPS(IN)                                                                                         \
    do {                                                                                                      \
        if (last) { /* the sample's last step: its membrane state is never read again (t = 0 restarts it) */  \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN);                                                                     \
                    out[e] = (float)(v > thr);                                                                \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN);                                               \
                    out[e] = (float)(v > thr);                                                                \
                }                                                                                             \
        } else if (sub) {                                                                                     \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN), sf = (float)(v > thr), d = sf * thr;                                \
                    vv[e] = v - d;                                                                            \
                    out[e] = sf;                                                                              \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN), sf = (float)(v > thr), d = sf * thr;          \
                    vv[e] = v - d;                                                                            \
                    out[e] = sf;                                                                              \
                }                                                                                             \
        } else {                                                                                              \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN), sf = (float)(v > thr), keep = 1.0f - sf;                            \
                    vv[e] = v * keep;                                                                         \
                    out[e] = sf;                                                                              \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN), sf = (float)(v > thr), keep = 1.0f - sf;      \
                    vv[e] = v * keep;                                                                         \
                    out[e] = sf;                                                                              \
                }                                                                                             \
        }                                                                                                     \
    } while (0)
#else
/* Scalar builds: the same arithmetic with the spike as a branch (Cortex-M: one instruction less per element than
 * materializing s as a float, the common no-spike path stores v and 0 as they are). Exact: s = 0 leaves
 * v * (1 - 0) = v and v - 0 * thr = v (v <= thr: v is not -0 when thr < 0); s = 1 stores RESET: v * 0 or v - thr. */
#define LIF_RESET_LOOPS(IN, RESET)                                                                            \
    do {                                                                                                      \
        if (t == 0)                                                                                           \
            for (e = e0; e < e1; e++) {                                                                       \
                const float v = (IN);                                                                         \
                vv[e] = v;                                                                                    \
                out[e] = 0.0f;                                                                                \
                if (v > thr) { vv[e] = (RESET); out[e] = 1.0f; }                                              \
            }                                                                                                 \
        else                                                                                                  \
            for (e = e0; e < e1; e++) {                                                                       \
                const float b = beta * vv[e], v = b + (IN);                                                   \
                vv[e] = v;                                                                                    \
                out[e] = 0.0f;                                                                                \
                if (v > thr) { vv[e] = (RESET); out[e] = 1.0f; }                                              \
            }                                                                                                 \
    } while (0)
#define LIF_LOOPS(IN)                                                                                         \
    do {                                                                                                      \
        if (last) {                                                                                           \
            if (t == 0)                                                                                       \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float v = (IN);                                                                     \
                    out[e] = 0.0f;                                                                            \
                    if (v > thr) out[e] = 1.0f;                                                               \
                }                                                                                             \
            else                                                                                              \
                for (e = e0; e < e1; e++) {                                                                   \
                    const float b = beta * vv[e], v = b + (IN);                                               \
                    out[e] = 0.0f;                                                                            \
                    if (v > thr) out[e] = 1.0f;                                                               \
                }                                                                                             \
        } else if (sub) {                                                                                     \
            LIF_RESET_LOOPS(IN, v - thr);                                                                     \
        } else {                                                                                              \
            LIF_RESET_LOOPS(IN, v * 0.0f);                                                                    \
        }                                                                                                     \
    } while (0)
#endif

static void lif_step(slt_model *m, slt_node *n, const float *input, uint32_t t, uint8_t *spikes) {
    const float beta = n->beta, thr = n->thr;
    const uint32_t size = n->size;
    const int sub = (n->flags & F_SUBTRACT) != 0, last = t + 1u == m->T;
    float *restrict vv = n->v;   /* the membrane state never aliases an activation buffer */
    float *out = n->out;
    const float *cur = node_out(m, n->in[0], input);
    uint32_t e, e0, e1;
    if (n->fused) {
        /* in place on a conv's accumulators [O][H][W] (deferred epilogue): binary I = acc * scale_c + bias_c,
         * float I = acc + bias_c, the same roundings run_synapse would have stored (float: acc * 1 = acc exactly) */
        const slt_node *syn = &m->nodes[n->in[0]];
        const uint32_t o = syn->cols, per = syn->d[1] * syn->d[2];
        const int binary = (syn->flags & F_BINARY) != 0;
        const uint8_t *bias = syn->params + (binary ? 4u * o : 0u);
        uint32_t c;
        for (c = 0, e0 = 0; c < o; c++, e0 = e1) {
            const float sc = binary ? rdf(syn->params + 4u * c) : 1.0f, bi = rdf(bias + 4u * c);
            e1 = e0 + per;
            if (binary) LIF_LOOPS(cur[e] * sc + bi);
            else LIF_LOOPS(cur[e] + bi);   /* float: acc * 1 = acc exactly, so the multiply is skipped */
        }
    } else {
        if (n->n_in > 1) {  /* summed input current, computed into the output buffer first */
            sum_inputs(m, n, input, out, size);
            cur = out;
        }
        e0 = 0;
        e1 = size;
        LIF_LOOPS(cur[e]);
    }
    if (spikes)
        for (e = 0; e < size; e++) spikes[n->spike_off + e] = (uint8_t)(out[e] != 0.0f);
}

static void run_step(slt_model *m, const float *input, const float *prev, uint32_t t, float *logits,
                     uint8_t *spikes) {
    uint32_t i, e;
    for (i = 1; i < m->n_nodes; i++) {
        slt_node *n = &m->nodes[i];
        switch (n->op) {
        case OP_CONV: case OP_AFFINE:
            run_synapse(m, n, input, prev);
            break;
        case OP_LIF:
            lif_step(m, n, input, t, spikes);
            break;
        case OP_FLATTEN: case OP_ADD:
            if (n->n_in == 1 && n->out == node_out(m, n->in[0], input)) break;   /* in place: nothing to copy */
            sum_inputs(m, n, input, n->out, n->size);
            break;
        case OP_TOKENS: {
            const float *x = node_out(m, n->in[0], input);
            uint32_t d, p, D = n->d[1], P = n->d[0];
            if (n->n_in > 1) {
                for (p = 0; p < P; p++)
                    for (d = 0; d < D; d++) n->out[p * D + d] = in_val(m, n, input, d * P + p);
            } else {
                for (p = 0; p < P; p++)
                    for (d = 0; d < D; d++) n->out[p * D + d] = x[d * P + p];
            }
            break;
        }
        case OP_PATCH: {
            uint32_t r, d, D = n->d[1];
            const float *x = node_out(m, n->in[0], input);
            for (r = 0; r < n->d[0]; r++) {
                uint32_t src = rd32(n->index + 4u * r);
                if (n->n_in == 1)
                    for (d = 0; d < D; d++) n->out[r * D + d] = x[src * D + d];
                else
                    for (d = 0; d < D; d++) n->out[r * D + d] = in_val(m, n, input, src * D + d);
            }
            break;
        }
        case OP_ATTN: {
            const float *q = m->nodes[n->in[0]].out, *k = m->nodes[n->in[1]].out, *v = m->nodes[n->in[2]].out;
            uint32_t N = n->d[0], D = n->d[1], dh = D / n->heads, h, a, b, d;
            for (e = 0; e < n->size; e++) n->out[e] = 0.0f;
            for (h = 0; h < n->heads; h++)
                for (a = 0; a < N; a++) {
                    /* a query row without spikes in this head: every S[a, b] is 0 (exact integers) */
                    for (d = 0; d < dh && !nonzero(q[a * D + h * dh + d]); d++) {}
                    if (d == dh) continue;
                    for (b = 0; b < N; b++) {
                        float sc = 0.0f;  /* q_a . k_b over this head: spikes, an exact integer */
                        for (d = 0; d < dh; d++) sc = sc + q[a * D + h * dh + d] * k[b * D + h * dh + d];
                        if (sc == 0.0f) continue;
                        for (d = 0; d < dh; d++) n->out[a * D + h * dh + d] += sc * v[b * D + h * dh + d];
                    }
                }
            for (e = 0; e < n->size; e++) n->out[e] = n->out[e] * n->ascale;
            break;
        }
        case OP_TOKSUM: {
            uint32_t N = m->nodes[n->in[0]].d[0], D = n->d[0], p, d;
            for (d = 0; d < D; d++) n->out[d] = 0.0f;
            if (n->n_in == 1) {
                const float *x = node_out(m, n->in[0], input);
                for (p = 0; p < N; p++)
                    for (d = 0; d < D; d++) n->out[d] = n->out[d] + x[p * D + d];
            } else {
                for (p = 0; p < N; p++)
                    for (d = 0; d < D; d++) n->out[d] = n->out[d] + in_val(m, n, input, p * D + d);
            }
            break;
        }
        case OP_OUTPUT:
            for (e = 0; e < n->size; e++) logits[e] = logits[e] + in_val(m, n, input, e);
            break;
        default:
            break;
        }
    }
}

int slt_run(slt_model *m, const float *input, float *logits, uint8_t *spikes) {
    uint32_t t, e;
    if (!m || !input || !logits) return SLT_E_ARG;
    for (e = 0; e < m->n_classes; e++) logits[e] = 0.0f;
    for (t = 0; t < m->T; t++)
        run_step(m, input + (size_t)t * m->in_size, t ? input + (size_t)(t - 1u) * m->in_size : 0, t, logits,
                 spikes ? spikes + (size_t)t * m->spike_count : 0);
    return SLT_OK;
}

int slt_run_batch(slt_model *m, const float *input, uint32_t batch, float *logits, uint8_t *spikes) {
    uint32_t b, t, e;
    if (!m || !input || !logits) return SLT_E_ARG;
    for (b = 0; b < batch; b++) {
        float *lg = logits + (size_t)b * m->n_classes;
        for (e = 0; e < m->n_classes; e++) lg[e] = 0.0f;
        for (t = 0; t < m->T; t++)
            run_step(m, input + ((size_t)t * batch + b) * m->in_size,
                     t ? input + ((size_t)(t - 1u) * batch + b) * m->in_size : 0, t, lg,
                     spikes ? spikes + ((size_t)t * batch + b) * m->spike_count : 0);
    }
    return SLT_OK;
}
