/* slt_reader.c: the strict reader of packed slt-deploy models (docs/packed-format.md): one pass validates the whole
 * file (header, checksums, every node record, weight streams, strings) and, given an arena, builds the model in it
 * (slt_arena_size, slt_open). Nothing is allocated; every size is checked before it is used. */
#include "slt_internal.h"

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

/* ------------------------------------------------------------------------------------------------------------ */
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
    uint32_t T;            /* time steps */
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
/* how many of record r's inputs are node j */
static uint32_t reads_node(const uint8_t *r, uint32_t j) {
    uint32_t n_in = r[1], w1 = rd32(r + 4), w2 = rd32(r + 8), in[4], k, cnt = 0;
    in[0] = w1 & 0xFFFFu; in[1] = w1 >> 16; in[2] = w2 & 0xFFFFu; in[3] = w2 >> 16;
    for (k = 0; k < n_in && k < MAX_INPUTS; k++) cnt += in[k] == j;
    return cnt;
}

static uint32_t consumers(const uint8_t *pl, uint32_t n_nodes, uint32_t j) {
    uint32_t i, cnt = 0;
    for (i = j + 1; i < n_nodes; i++) cnt += reads_node(pl + (size_t)i * RECORD_SIZE, j);
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

#if SLT_SIMD
/* node j (a LIF) may hold T steps of spikes (tbase): it reads a layer that reads only the model input, and every
 * reader of its output is a synaptic layer, which looks the buffer up at each step (none works in place in it) */
static int all_steps_lif(const parse_ctx *c, uint32_t n_nodes, uint32_t j, const slt_node *nd) {
    uint32_t i;
    if (nd->op != OP_LIF || nd->n_in != 1 || c->T < 2u || !keeps_buffer(c->pl, n_nodes, nd->in[0])) return 0;
    for (i = j + 1; i < n_nodes; i++) {
        const uint8_t *r = c->pl + (size_t)i * RECORD_SIZE;
        if (r[0] != OP_CONV && r[0] != OP_AFFINE && reads_node(r, j)) return 0;
    }
    return 1;
}
#endif

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
    const uint64_t ho = nd->d[1], wo = nd->d[2], pw = wo + span, in = (uint64_t)nd->ci * nd->ih * nd->iw;
    /* a plane has (ho + span) rows of pw <= span * pw + lb floats; reads reach span * pw + span + lb - 1 */
    const uint64_t lb = (ho * pw + 7u) & ~(uint64_t)7u, ps = (span * pw + span + lb + 7u) & ~(uint64_t)7u;
    const uint64_t planes = (uint64_t)nd->ci * st * st * ps;
    /* an input's event weight (evw) is at most k*k*cols; a channel's are summed in 32 bits (stage_channel) */
    if (st > 4u || nd->k > 16u || planes > (1u << 22) || lb > (1u << 22) ||
        (uint64_t)nd->k * nd->k * nd->cols * nd->ih * nd->iw >= (1ull << 32))
        return;
    nd->qneg = qneg;
    nd->pw = (uint32_t)pw;
    nd->ps = (uint32_t)ps;
    nd->lb = (uint32_t)lb;
    nd->stage = (float *)take(c, sizeof(float) * (size_t)planes);
    nd->acc = (float *)take(c, sizeof(float) * (size_t)lb);   /* one output channel at a time */
    nd->evw = (uint32_t *)take(c, sizeof(uint32_t) * (size_t)in);
    nd->tcol = (uint32_t *)take(c, sizeof(uint32_t) * ((size_t)nd->cols + 1u));
    nd->toff = (uint32_t *)take(c, sizeof(uint32_t) * (size_t)nd->kept);
    nd->tw = (float *)take(c, sizeof(float) * (size_t)nd->kept);
    if (nd->stage && nd->acc && nd->evw && nd->tcol && nd->toff && nd->tw) {
        /* evw[ci][iy][ix]: the kept weights that read input (ci, iy, ix) at some output (oy, ox) < (ho, wo), i.e. the
         * synaptic events a nonzero value there makes: packing row (ci, ky, kx) reads (oy*st + ky - pd, ox*st + kx - pd) */
        const uint32_t k = nd->k, ih = nd->ih, iw = nd->iw;
        uint32_t ci, ky, kx, oy, ox, r = 0;
        size_t i;
        for (i = 0; i < (size_t)planes; i++) nd->stage[i] = 0.0f;
        for (i = 0; i < (size_t)in; i++) nd->evw[i] = 0;
        for (ci = 0; ci < nd->ci; ci++)
            for (ky = 0; ky < k; ky++)
                for (kx = 0; kx < k; kx++, r++) {
                    const uint32_t kk = nd->rowtab[r + 1] - nd->rowtab[r];
                    if (!kk) continue;
                    for (oy = 0; oy < ho; oy++) {
                        const uint32_t iy = oy * st + ky;   /* + pd */
                        uint32_t *row;
                        if (iy < nd->pd || iy - nd->pd >= ih) continue;
                        row = nd->evw + ((size_t)ci * ih + iy - nd->pd) * iw;
                        for (ox = 0; ox < wo; ox++)
                            if (ox * st + kx >= nd->pd && ox * st + kx - nd->pd < iw) row[ox * st + kx - nd->pd] += kk;
                    }
                }
        /* the kept weights by output column, each column's in ascending packing row (the order of accumulation):
         * packing row (ci, ky, kx) reads plane (ci, dy % st, dx % st) at row dy / st, column dx / st, with
         * dy = ky + st * qneg - pd and dx likewise (conv_staged) */
        for (i = 0; i <= nd->cols; i++) nd->tcol[i] = 0;
        for (i = 0; i < nd->kept; i++) nd->tcol[(nd->sgncol ? nd->colidx[i] >> 1 : nd->colidx[i]) + 1u]++;
        for (i = 0; i < nd->cols; i++) nd->tcol[i + 1] += nd->tcol[i];
        for (ci = 0, r = 0; ci < nd->ci; ci++)
            for (ky = 0; ky < k; ky++)
                for (kx = 0; kx < k; kx++, r++) {
                    const uint32_t dy = ky + st * qneg - nd->pd, dx = kx + st * qneg - nd->pd;
                    const uint32_t off = (uint32_t)(((uint64_t)ci * st * st + (dy % st) * st + dx % st) * ps +
                                                    (dy / st) * pw + dx / st);
                    uint32_t q;
                    for (q = nd->rowtab[r]; q < nd->rowtab[r + 1]; q++) {
                        const uint32_t col = nd->sgncol ? nd->colidx[q] >> 1 : nd->colidx[q];
                        const uint32_t t = nd->tcol[col]++;   /* tcol[c] ends as tcol[c + 1] of the prefix */
                        nd->toff[t] = off;
                        nd->tw[t] = weight_of(nd, nd->sgncol ? 0 : (nd->flags & F_BINARY) ? 1 : 2, q);
                    }
                }
        for (i = nd->cols; i > 0; i--) nd->tcol[i] = nd->tcol[i - 1];   /* back to the prefix */
        nd->tcol[0] = 0;
    }
}
#endif

#if SLT_SIMD
/* A single-input affine layer reading spikes (SIMD builds): every row's kept weights as whole chunks of AFF_CHUNK
 * (column, addend) slots, the last chunk padded with the row's first column and +0, and a bit per row that has kept
 * weights (affine_chunks). Reserved for kept + (AFF_CHUNK - 1) * din slots, the most any mask needs (the sizing pass
 * has no row table to count them). */
static void affine_chunk_buffers(parse_ctx *c, slt_node *nd) {
    const uint64_t slots = (uint64_t)nd->kept + (uint64_t)(AFF_CHUNK - 1u) * nd->din;
    const uint32_t words = (nd->din + 31u) / 32u;
    if (slots > (1u << 24)) return;
    nd->arow = (uint32_t *)take(c, sizeof(uint32_t) * ((size_t)nd->din + 1u));
    nd->anz = (uint32_t *)take(c, sizeof(uint32_t) * (size_t)words);
    nd->acol = (uint16_t *)take(c, sizeof(uint16_t) * (size_t)slots);
    nd->aw = (float *)take(c, sizeof(float) * (size_t)slots);
    if (nd->arow && nd->anz && nd->acol && nd->aw && nd->rowtab && (nd->colidx || !nd->kept)) {
        const int kind = nd->sgncol ? 0 : (nd->flags & F_BINARY) ? 1 : 3;
        uint32_t i, q, k = 0;
        for (i = 0; i < words; i++) nd->anz[i] = 0;
        for (i = 0; i < nd->din; i++) {
            const uint32_t k0 = nd->rowtab[i], k1 = nd->rowtab[i + 1];
            const uint32_t first = nd->sgncol && k1 > k0 ? nd->colidx[k0] >> 1 : k1 > k0 ? nd->colidx[k0] : 0u;
            nd->arow[i] = k;
            if (k1 == k0) continue;
            nd->anz[i / 32u] |= 1u << (i % 32u);
            for (q = 0; q < (k1 - k0 + AFF_CHUNK - 1u) / AFF_CHUNK * AFF_CHUNK; q++) {
                const size_t slot = (size_t)k * AFF_CHUNK + q;
                if (k0 + q < k1) {
                    nd->acol[slot] = (uint16_t)(nd->sgncol ? nd->colidx[k0 + q] >> 1 : nd->colidx[k0 + q]);
                    nd->aw[slot] = weight_of(nd, kind, k0 + q);   /* a spike is 1: w * 1 = w */
                } else {
                    nd->acol[slot] = (uint16_t)first;
                    nd->aw[slot] = 0.0f;
                }
            }
            k += (k1 - k0 + AFF_CHUNK - 1u) / AFF_CHUNK;
        }
        nd->arow[nd->din] = k;
    }
}
#endif

/* a conv that runs through staged planes applies its own epilogue (conv_staged): its LIF is not fused with it */
static int is_staged(const slt_node *nd) {
#if SLT_SIMD
    return nd->stage != 0;
#else
    (void)nd;
    return 0;
#endif
}

/* buffers: every node but input/output owns an output buffer, except a single-input LIF or flatten whose input
 * node (not the model input) has no other consumer: it works in place in that node's buffer (the values are read
 * and written element by element). LIF nodes also own their membrane state. */
static void assign_buffers(parse_ctx *c, slt_node *nodes, uint32_t n_nodes, uint32_t j, slt_node *nd) {
    (void)j;   /* scalar builds: no all-steps LIF */
    if ((nd->op == OP_LIF || nd->op == OP_FLATTEN) && nd->n_in == 1 && nd->in[0] != 0 &&
        consumers(c->pl, n_nodes, nd->in[0]) == 1 && !(nd->op == OP_LIF && keeps_buffer(c->pl, n_nodes, nd->in[0]))) {
        if (c->arena) {
            nd->out = nodes[nd->in[0]].out;
            if (nd->op == OP_LIF && nodes[nd->in[0]].op == OP_CONV && !is_staged(&nodes[nd->in[0]])) {
                nd->fused = 1;                   /* its input's only reader: y = acc*scale + bias on the fly */
                nodes[nd->in[0]].defer = 1;
            }
        }
    } else if (nd->op != OP_INPUT && nd->op != OP_OUTPUT) {
#if SLT_SIMD
        if (all_steps_lif(c, n_nodes, j, nd)) {
            nd->out = nd->tbase = (float *)take(c, sizeof(float) * (size_t)nd->size * c->T);
        } else
#endif
        nd->out = (float *)take(c, sizeof(float) * (size_t)nd->size);
    }
    if (nd->op == OP_LIF) nd->v = (float *)take(c, sizeof(float) * (size_t)nd->size);
#if SLT_SIMD
    if (nd->op == OP_CONV && nd->n_in == 1) stage_buffers(c, nd);
    if (nd->op == OP_AFFINE && nd->n_in == 1 && nd->cols <= 65536u && spikes_rec(c->pl, nd->in[0]))
        affine_chunk_buffers(c, nd);
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
    c->T = T;
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
        assign_buffers(c, nodes, n_nodes, i, &nd);
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
        m->const_in = 0;
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
