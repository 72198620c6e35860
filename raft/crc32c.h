/*
 * crc32c.h: CRC-32C (Castagnoli), the checksum of every WAL record.
 * Software slice-by-8 tables, with the SSE4.2 crc32 instruction used when the
 * CPU has it (checked once at run time). Both give identical results.
 */
#ifndef KSHIM_RAFT_CRC32C_H
#define KSHIM_RAFT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: pass 0 to start. crc32c(0, "123456789", 9) == 0xE3069283. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The portable implementation alone (for tests comparing the two paths). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

#endif
