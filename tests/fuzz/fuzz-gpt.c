/* SPDX-License-Identifier: MIT */
/*
 * fuzz-gpt.c - the GPT builder (gpt_build) fed partitions decoded from
 * the input: region maps of any size from a byte to 2^40 (zeros, memory,
 * fake files), type and partition GUIDs (the real ones, derived ones,
 * repeated or zero), attributes, and names (ASCII, multi-byte UTF-8, the
 * 36-unit limit and one past it, invalid UTF-8).
 *
 * Invariants: gpt_build succeeds exactly when the table can be written
 * (1..128 partitions, non-zero GUIDs, partition GUIDs unique, names of at
 * most 36 UTF-16 units of valid UTF-8); then the disk map is sound
 * (map_check) and passes check_gpt: protective MBR, both headers and
 * arrays with their CRC32s, entries as given, 1 MiB alignment, no
 * overlaps, and every partition holding its map's bytes.
 *
 * Input: the partition count and disk GUID mode, then per partition its
 * map (map_decode), type, GUID, attributes and name.  Seeds: corpus/gpt/.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt/gpt.h"
#include "tests/fuzz/fuzz.h"

#define MAX_PARTS 130

/* Whether name is valid UTF-8 of at most 36 UTF-16 units (B.10). */
static bool name_ok(const char *name)
{
	uint16_t u[40];
	int n = fz_utf16(name, u, 40);
	return n >= 0 && n <= 36;
}

static void pick_guid(struct fz *f, struct gpt_guid *g, size_t i, const struct gpt_guid *prev)
{
	uint8_t m = fz_u8(f);

	switch (m % 8) {
	case 0: memset(g, 0, sizeof(*g)); break;			/* invalid */
	case 1: if (prev) { *g = *prev; break; }			/* repeated */
		__attribute__((fallthrough));
	case 2: fz_bytes(f, g->b, 16); break;
	default: gpt_guid_derive(&i, sizeof(i), m & 1 ? "esp" : "root", g); break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {
		NULL, "", "ESP", "root", "root-x86-64", "\xc3\xa9t\xc3\xa9",
		"\xf0\x9f\x98\x80 emoji", "123456789012345678901234567890123456",
		"1234567890123456789012345678901234567", "bad\xff", "\xe6\x97\xa5\xe6\x9c\xac",
		"\xc3", "ab\xed\xa0\x80", "0123456789012345678901234567890123\xf0\x9f\x98\x80",
	};
	static struct region_map maps[MAX_PARTS];
	static struct map_pool pools[MAX_PARTS];
	static struct gpt_partition parts[MAX_PARTS];
	struct fz f = { data, size };
	uint8_t b = fz_u8(&f);
	size_t nparts = b & 0x80 ? fz_u8(&f) % MAX_PARTS : 1 + b % 4;
	struct gpt_guid disk_guid;
	bool ok = nparts >= 1 && nparts <= 128;

	pick_guid(&f, &disk_guid, 1000, NULL);
	ok &= memcmp(disk_guid.b, (uint8_t[16]){ 0 }, 16) != 0;
	for (size_t i = 0; i < nparts; i++) {
		struct gpt_partition *p = &parts[i];
		uint8_t t = fz_u8(&f);
		region_map_init(&maps[i]);
		memset(&pools[i], 0, sizeof(pools[i]));
		if (i < 8 || (t & 0x80))
			map_decode(&f, &maps[i], &pools[i]);
		else	/* the rest small and cheap */
			FZ_CHECK(region_add_zero(&maps[i], 1 + fz_u8(&f)) == 0, "region_add_zero");
		*p = (struct gpt_partition){ .map = &maps[i], .name = names[fz_u8(&f) %
									 ARRAY_SIZE(names)] };
		switch (t % 5) {
		case 0: p->type = gpt_type_esp; break;
		case 1: p->type = gpt_type_root_x86_64; break;
		case 2: p->type = gpt_type_root_aarch64; break;
		case 3: fz_bytes(&f, p->type.b, 16); break;
		default: memset(&p->type, 0, sizeof(p->type)); break;
		}
		pick_guid(&f, &p->guid, i, i ? &parts[i - 1].guid : NULL);
		p->attrs = t & 0x40 ? fz_u64(&f) : t & 0x20 ? GPT_ATTR_READ_ONLY : 0;

		ok &= memcmp(p->type.b, (uint8_t[16]){ 0 }, 16) != 0 &&
		      memcmp(p->guid.b, (uint8_t[16]){ 0 }, 16) != 0 && name_ok(p->name);
		for (size_t k = 0; k < i; k++)
			ok &= memcmp(parts[k].guid.b, p->guid.b, 16) != 0;
		map_check(&maps[i]);
	}
	/* The disk must fit 2^64 bytes: every partition rounds to 1 MiB. */
	uint64_t total = 2048;
	for (size_t i = 0; i < nparts; i++)
		total += (maps[i].size + 512 * 2048 - 1) / 512;
	ok &= total < (UINT64_MAX / 512) - 4096;

	struct region_map disk;
	uint64_t first[MAX_PARTS];
	region_map_init(&disk);
	int r = gpt_build(parts, nparts, &disk_guid, &disk, first);
	if (getenv("FUZZ_TRACE"))
		fprintf(stderr, "gpt_build: %zu partitions, %s, returns %d, disk %llu bytes\n",
			nparts, ok ? "valid" : "invalid", r, (unsigned long long)disk.size);
	if (r < 0) {
		FZ_CHECK(r == -EINVAL || r == -EOVERFLOW || r == -ENOMEM,
			 "gpt_build: undocumented error %d", r);
		FZ_CHECK(!ok, "gpt_build refused a valid table (%d)", r);
	} else {
		FZ_CHECK(ok, "gpt_build took an invalid table");
		map_check(&disk);
		uint8_t sbuf[64];
		for (size_t i = 0; i < sizeof(sbuf); i++)
			sbuf[i] = (uint8_t)fz_mix(size + i);
		struct fz sample = { sbuf, sizeof(sbuf) };
		check_gpt(&disk, parts, nparts, &disk_guid, &sample);
		for (size_t i = 0; i < nparts; i++)
			FZ_CHECK(first[i] * 512 <= disk.size && first[i] % 2048 == 0,
				 "first LBA %llu of partition %zu", (unsigned long long)first[i],
				 i);
	}
	region_map_free(&disk);
	for (size_t i = 0; i < nparts; i++) {
		region_map_free(&maps[i]);
		map_pool_free(&pools[i]);
	}
	return 0;
}
