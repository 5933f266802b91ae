/* Instruction-mix peaks of int8 products on one x86 core (AVX2 forms), for the benchmarks' notes: how many
 * multiply-adds a second each form can reach with operands in registers and no memory traffic.
 *   - vpmaddwd + vpaddd on int16-widened codes and weights: openqnn's exact AVX2 GEMM (16 per instruction);
 *   - vpmaddubsw + vpmaddwd(ones) + vpaddd: MLAS's AVX2 u8s8 kernel, which saturates where a pair of
 *     products passes 32767 (not exact for arbitrary weights);
 *   - two vpmaddubsw summed in int16 before widening: exact only under tighter bounds still.
 * Built and run by benchmarks/peaks.py. */
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  long N=100000000; double t, dt;
  /* A: 8 x (vpmaddwd + vpaddd) per iteration, independent accumulators ymm0-7, sources ymm8-10 */
  t=now();
  __asm__ volatile(
   "vpxor %%ymm8,%%ymm8,%%ymm8\n vpxor %%ymm9,%%ymm9,%%ymm9\n mov %0,%%rcx\n"
   "1:\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm11\n vpaddd %%ymm11,%%ymm0,%%ymm0\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm12\n vpaddd %%ymm12,%%ymm1,%%ymm1\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm13\n vpaddd %%ymm13,%%ymm2,%%ymm2\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm14\n vpaddd %%ymm14,%%ymm3,%%ymm3\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm11\n vpaddd %%ymm11,%%ymm4,%%ymm4\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm12\n vpaddd %%ymm12,%%ymm5,%%ymm5\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm13\n vpaddd %%ymm13,%%ymm6,%%ymm6\n"
   "vpmaddwd %%ymm8,%%ymm9,%%ymm14\n vpaddd %%ymm14,%%ymm7,%%ymm7\n"
   "dec %%rcx\n jnz 1b\n" :: "r"(N) : "rcx","memory","xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm11","xmm12","xmm13","xmm14");
  dt=now()-t; printf("vpmaddwd + vpaddd (exact, openqnn AVX2): %.1f GMAC/s\n", N*8*16/dt/1e9);
  /* B: 8 x (vpmaddubsw + vpmaddwd ones + vpaddd) */
  t=now();
  __asm__ volatile(
   "mov %0,%%rcx\n"
   "1:\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm11\n vpmaddwd %%ymm11,%%ymm10,%%ymm11\n vpaddd %%ymm11,%%ymm0,%%ymm0\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm12\n vpmaddwd %%ymm12,%%ymm10,%%ymm12\n vpaddd %%ymm12,%%ymm1,%%ymm1\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm13\n vpmaddwd %%ymm13,%%ymm10,%%ymm13\n vpaddd %%ymm13,%%ymm2,%%ymm2\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm14\n vpmaddwd %%ymm14,%%ymm10,%%ymm14\n vpaddd %%ymm14,%%ymm3,%%ymm3\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm11\n vpmaddwd %%ymm11,%%ymm10,%%ymm11\n vpaddd %%ymm11,%%ymm4,%%ymm4\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm12\n vpmaddwd %%ymm12,%%ymm10,%%ymm12\n vpaddd %%ymm12,%%ymm5,%%ymm5\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm13\n vpmaddwd %%ymm13,%%ymm10,%%ymm13\n vpaddd %%ymm13,%%ymm6,%%ymm6\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm14\n vpmaddwd %%ymm14,%%ymm10,%%ymm14\n vpaddd %%ymm14,%%ymm7,%%ymm7\n"
   "dec %%rcx\n jnz 1b\n" :: "r"(N) : "rcx","memory","xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14");
  dt=now()-t; printf("vpmaddubsw + vpmaddwd + vpaddd (saturating, MLAS AVX2): %.1f GMAC/s\n", N*8*32/dt/1e9);
  /* C: 4 x (2 vpmaddubsw + vpaddw + vpmaddwd + vpaddd) = 64 multiply-adds each */
  t=now();
  __asm__ volatile(
   "mov %0,%%rcx\n"
   "1:\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm11\n vpmaddubsw %%ymm8,%%ymm10,%%ymm15\n vpaddw %%ymm11,%%ymm15,%%ymm11\n vpmaddwd %%ymm11,%%ymm10,%%ymm11\n vpaddd %%ymm11,%%ymm0,%%ymm0\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm12\n vpmaddubsw %%ymm8,%%ymm10,%%ymm15\n vpaddw %%ymm12,%%ymm15,%%ymm12\n vpmaddwd %%ymm12,%%ymm10,%%ymm12\n vpaddd %%ymm12,%%ymm1,%%ymm1\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm13\n vpmaddubsw %%ymm8,%%ymm10,%%ymm15\n vpaddw %%ymm13,%%ymm15,%%ymm13\n vpmaddwd %%ymm13,%%ymm10,%%ymm13\n vpaddd %%ymm13,%%ymm2,%%ymm2\n"
   "vpmaddubsw %%ymm8,%%ymm9,%%ymm14\n vpmaddubsw %%ymm8,%%ymm10,%%ymm15\n vpaddw %%ymm14,%%ymm15,%%ymm14\n vpmaddwd %%ymm14,%%ymm10,%%ymm14\n vpaddd %%ymm14,%%ymm3,%%ymm3\n"
   "dec %%rcx\n jnz 1b\n" :: "r"(N) : "rcx","memory","xmm0","xmm1","xmm2","xmm3","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15");
  dt=now()-t; printf("2 vpmaddubsw + vpaddw + vpmaddwd + vpaddd (int16 sums): %.1f GMAC/s\n", N*4*64/dt/1e9);
}
