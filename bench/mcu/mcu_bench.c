/* bench/mcu/mcu_bench.c: counts the instructions the packed C runtime executes per frame on a Cortex-M7 under QEMU
 * (mps2-an500, run with -icount: the virtual clock advances a fixed time per guest instruction, so a hardware timer
 * read before and after slt_run() counts instructions). Built and run by bench/mcu.py, which generates
 * model_data.h (slt_deploy.backends.packed.embed) and frames_data.h (encoded input frames). No libc: output goes
 * through Arm semihosting (bkpt 0xab), one line per frame:
 *   frame <i> ticks <timer ticks> events <synaptic events> logits <hex float bits...>
 * and a calibration line for a loop of known length ("calib <instructions> ticks <ticks>"). */
#include "slt_packed.h"
#include "model_data.h"   /* SLT_MODEL[], SLT_MODEL_LEN, SLT_ARENA_BYTES, SLT_T_IN, SLT_CLASSES */
#include "frames_data.h"  /* N_FRAMES, FRAMES[N_FRAMES][SLT_T_IN] */

/* CMSDK APB timer 0 of the MPS2 FPGA image: a 32-bit down-counter clocked by the 25 MHz peripheral clock */
#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)
#define CPACR (*(volatile uint32_t *)0xE000ED88u)

static uint64_t arena[(SLT_ARENA_BYTES + 7u) / 8u];
static float logits[SLT_CLASSES];

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memset(void *d, int c, size_t n) {
    unsigned char *p = (unsigned char *)d;
    while (n--) *p++ = (unsigned char)c;
    return d;
}
void *memcpy(void *d, const void *s, size_t n) {
    unsigned char *p = (unsigned char *)d;
    const unsigned char *q = (const unsigned char *)s;
    while (n--) *p++ = *q++;
    return d;
}

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static char line[64 + 12 * SLT_CLASSES];
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
static void flush(void) {
    line[pos++] = '\n';
    line[pos] = 0;
    semihost(0x04, line); /* SYS_WRITE0 */
    pos = 0;
}
static void quit(int code) {
    /* SYS_EXIT; on 32-bit Arm the reason code is r1 itself: ApplicationExit (0) or RunTimeErrorUnknown */
    semihost(0x18, (const void *)(uintptr_t)(code ? 0x20023u : 0x20026u));
    for (;;) {}
}

static uint32_t now(void) { return TIMER0_VALUE; }

/* a loop of exactly 2 * n + a few instructions, to check the ticks -> instructions factor */
static uint32_t calib(uint32_t n) {
    uint32_t t0, t1;
    t0 = now();
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    t1 = now();
    return t0 - t1;
}

int main(void);
void reset_handler(void);
extern uint32_t _sbss, _ebss, _estack;

__attribute__((section(".vectors"), used)) static const uintptr_t vectors[16] = {
    (uintptr_t)&_estack, (uintptr_t)reset_handler};

void reset_handler(void) {
    uint32_t *p;
    for (p = &_sbss; p < &_ebss; p++) *p = 0;
    CPACR |= 0xFu << 20; /* CP10/CP11 full access: the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    quit(main());
}

int main(void) {
    slt_model *m;
    size_t need;
    uint32_t f, i, empty;
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
    if (slt_arena_size(SLT_MODEL, SLT_MODEL_LEN, 0, &need) || need > sizeof(arena)) { put("error arena"); flush(); return 1; }
    if (slt_open(SLT_MODEL, SLT_MODEL_LEN, 0, arena, sizeof(arena), &m)) { put("error open"); flush(); return 1; }
    for (f = 0; f < N_FRAMES; f++) {
        uint64_t e0 = slt_events(m), e1;
        uint32_t t0, t1;
        t0 = now();
        slt_run(m, FRAMES[f], logits, 0);
        t1 = now();
        e1 = slt_events(m);
        put("frame "); put_u(f); put(" ticks "); put_u(t0 - t1); put(" events "); put_u(e1 - e0); put(" logits");
        for (i = 0; i < SLT_CLASSES; i++) {
            union { float x; uint32_t u; } c;
            c.x = logits[i];
            put(" "); put_hex(c.u);
        }
        flush();
    }
    put("done"); flush();
    return 0;
}
