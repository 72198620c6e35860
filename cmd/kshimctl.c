/* kshimctl.c: the kshim admin CLI (being written). */
#include <stdio.h>
int main(void) { fprintf(stderr, "kshimctl: not built yet\n"); return 1; }
