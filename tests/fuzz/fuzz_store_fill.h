/*
 * fuzz_store_fill.h: a small store made through the real state machines
 * (fuzz_store_fill.c), the base of fuzz_store_values and of the seeds that
 * gen_store_seeds.c writes: every space of the LevelDB has real records.
 */
#ifndef KSHIM_FUZZ_STORE_FILL_H
#define KSHIM_FUZZ_STORE_FILL_H

#include "mvcc.h"

/* Fills the empty store in dir (created) and closes it: keys with several
 * versions, a delete, a compaction, two leases (one with attached keys),
 * auth users and roles with permissions, auth enabled, an alarm and a
 * three-member table. 0, or -1 if a step failed. */
int fuzz_store_fill(const char *dir);

#endif
