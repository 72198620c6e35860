/* kshimd.c: the kshim daemon's main (being written: flags, server start). */
#include <stdio.h>
int main(void) { fprintf(stderr, "kshimd: not built yet\n"); return 1; }
