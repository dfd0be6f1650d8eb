/* packed_loop.c: the packed C runtime timed in a C loop, no Python between calls (bench/sparse_speed.py --c-loop
 * builds it with the binding's flags beside the runtime's sources and runs it).
 *     packed_loop MODEL.slt FRAMES.bin CALLS
 * FRAMES.bin: float32 samples [N][T][inputs] (one sample = one call of slt_run). Prints the mean time per call of
 * the fastest of 7 blocks of CALLS calls (frames cycled), in ms, and the arena size in bytes. */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include "slt_packed.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        if (f) fclose(f);
        return 0;
    }
    buf = (unsigned char *)malloc((size_t)n + 1u);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = 0;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    size_t len = 0, flen = 0, need = 0, per, n, r;
    unsigned char *file, *frames;
    void *arena;
    slt_model *m;
    float logits[256];
    double best = 1e30;
    long calls;
    int rep, e;
    if (argc != 4 || (calls = atol(argv[3])) <= 0) {
        fprintf(stderr, "usage: packed_loop MODEL.slt FRAMES.bin CALLS\n");
        return 2;
    }
    if (!(file = read_all(argv[1], &len)) || !(frames = read_all(argv[2], &flen))) {
        fprintf(stderr, "cannot read %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    if ((e = slt_arena_size(file, len, 0, &need)) != 0 || !(arena = malloc(need + 8u)) ||
        (e = slt_open(file, len, 0, arena, need, &m)) != 0) {
        fprintf(stderr, "cannot open %s: %s\n", argv[1], slt_error_string(e));
        return 1;
    }
    if (slt_n_classes(m) > 256) return 1;
    per = (size_t)slt_T(m) * slt_input_size(m);
    n = flen / (per * sizeof(float));
    if (n == 0) {
        fprintf(stderr, "%s holds no whole sample of %lu floats\n", argv[2], (unsigned long)per);
        return 2;
    }
    for (rep = 0; rep < 7; rep++) {
        const double t0 = now();
        double dt;
        for (r = 0; r < (size_t)calls; r++)
            if (slt_run(m, (const float *)(const void *)frames + per * (r % n), logits, 0)) return 1;
        dt = (now() - t0) / (double)calls;
        if (dt < best) best = dt;
    }
    printf("%.4f %lu\n", best * 1e3, (unsigned long)need);
    return 0;
}
