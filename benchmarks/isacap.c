/* Caps the instruction sets that CPUID reports to this process, so that a peer which cannot be capped by a
 * setting (ONNX Runtime's MLAS picks its kernels from CPUID alone) runs the same lower path as openqnn under
 * OPENQNN_MAX_ISA. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, 0) makes every later CPUID instruction
 * of this thread and the threads it starts trap; the SIGSEGV handler below answers it with the real values,
 * the AVX-512 (and, for the AVX2 level, AVX-VNNI) feature bits cleared, and resumes after the instruction.
 * Other SIGSEGVs go to the handler that was installed before. Benchmarks only: nothing in openqnn loads it.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <asm/prctl.h>
#include <cpuid.h>

static struct sigaction previous;
static volatile int level = -1;  /* 0: avx2 (no AVX-512, no VNNI), 1: avxvnni kept, AVX-512 off */
static volatile long emulated = 0;

static long set_cpuid(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, on); }

static void on_segv(int sig, siginfo_t *info, void *context) {
    ucontext_t *uc = (ucontext_t *)context;
    greg_t *g = uc->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
        unsigned leaf = (unsigned)g[REG_RAX], sub = (unsigned)g[REG_RCX], a, b, c, d;
        set_cpuid(1);
        __cpuid_count(leaf, sub, a, b, c, d);
        set_cpuid(0);
        if (leaf == 7 && sub == 0) {
            b &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31));
            c &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
            d &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
        } else if (leaf == 7 && sub == 1) {
            a &= ~((1u << 5) | (1u << 21) | (1u << 23));  /* avx512_bf16, amx-fp16, avx-ifma */
            if (level == 0) a &= ~(1u << 4);               /* avx_vnni */
        }
        g[REG_RAX] = a; g[REG_RBX] = b; g[REG_RCX] = c; g[REG_RDX] = d;
        g[REG_RIP] += 2;
        __atomic_add_fetch(&emulated, 1, __ATOMIC_RELAXED);
        return;
    }
    if (previous.sa_flags & SA_SIGINFO) { previous.sa_sigaction(sig, info, context); return; }
    if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) { previous.sa_handler(sig); return; }
    signal(sig, SIG_DFL);  /* returning re-executes the faulting instruction: the default action follows */
}

/* 0 on success; -1 where the kernel or CPU has no CPUID faulting. */
int isacap_enable(int lvl) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    level = lvl;
    if (sigaction(SIGSEGV, &sa, &previous) != 0) return -1;
    if (set_cpuid(0) != 0) { sigaction(SIGSEGV, &previous, 0); return -1; }
    return 0;
}

long isacap_emulated(void) { return emulated; }

/* CPUID leaf 7 (subleaf 0) EBX as this thread sees it (capped or not): for the tests. */
unsigned isacap_leaf7_ebx(void) {
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    (void)a; (void)c; (void)d;
    return b;
}
