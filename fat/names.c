// SPDX-License-Identifier: MIT
/*
 * names.c - names on a FAT volume: checking a long name and converting it
 * to UTF-16 (A.12), deciding whether it fits 8.3 with case flags (A.11),
 * generating unique short names with numeric tails, LFN slots and their
 * checksum (A.12), case-insensitive duplicates, and the volume label
 * (A.10).  Facts: ../shared/docs/fat32-gpt.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <endian.h>

#include "fat/internal.h"
#include "server/cleanup.h"

/* Bytes a long name may not contain besides control characters (A.12). */
static const char lfn_forbidden[] = "\\/:*?\"<>|";

/* Punctuation allowed in a short name besides A-Z and 0-9 (A.11). */
static const char sfn_special[] = "!#$%&'()-@^_`{}~";

static bool sfn_legal(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr(sfn_special, c));
}

static bool is_lower(unsigned char c)
{
	return c >= 'a' && c <= 'z';
}

static unsigned char to_upper(unsigned char c)
{
	return is_lower(c) ? c - 'a' + 'A' : c;
}

/*
 * Checks a long name and converts it to UTF-16LE units (host order in the
 * returned array; A.12).  A name must be non-empty, valid UTF-8, not "."
 * or "..", free of control characters and of \ / : * ? " < > |, and must
 * not end in a dot or a space (Linux and Windows strip those on lookup, so
 * such a file could never be opened).  Returns 0 and a malloc'ed array in
 * *ret_units with its length in *ret_len, or -EINVAL, -ENAMETOOLONG (more
 * than 255 UTF-16 units), -ENOMEM.
 */
int fat_long_name(iconv_t cd, const char *name, uint16_t **ret_units,
		  size_t *ret_len)
{
	if (!name || !*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;

	size_t n = strlen(name);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = name[i];
		if (c < 0x20 || c == 0x7f || strchr(lfn_forbidden, c))
			return -EINVAL;
	}
	if (name[n - 1] == '.' || name[n - 1] == ' ')
		return -EINVAL;
	/* A UTF-8 sequence gives at most one unit per byte. */
	if (n > 3 * FAT_LFN_MAX_UNITS)
		return -ENAMETOOLONG;

	_cleanup_free_ uint16_t *units = malloc(2 * n);
	if (!units)
		return -ENOMEM;
	char *in = (char *)name, *out = (char *)units;
	size_t inleft = n, outleft = 2 * n;
	(void)iconv(cd, NULL, NULL, NULL, NULL);
	if (iconv(cd, &in, &inleft, &out, &outleft) == (size_t)-1)
		return errno == E2BIG ? -ENAMETOOLONG : -EINVAL;
	if (iconv(cd, NULL, NULL, &out, &outleft) == (size_t)-1)
		return -EINVAL;

	size_t len = (2 * n - outleft) / 2;
	if (len > FAT_LFN_MAX_UNITS)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < len; i++)
		units[i] = le16toh(units[i]);
	*ret_units = TAKE_PTR(units);
	*ret_len = len;
	return 0;
}

/*
 * Fills ret_short with name's 8.3 form when the name can be stored as a
 * short name alone (A.11): ASCII, 1-8 characters, at most one dot followed
 * by 1-3 characters, only legal characters, and each part entirely upper
 * or entirely lower case.  Lower-case parts get the case flags in
 * *ret_nt_res.  Returns whether it fits; the outputs are only written then.
 */
bool fat_fits_83(const char *name, uint8_t ret_short[11], uint8_t *ret_nt_res)
{
	const char *dot = strchr(name, '.');
	size_t n = strlen(name);
	size_t base_len = dot ? (size_t)(dot - name) : n;
	size_t ext_len = dot ? n - base_len - 1 : 0;

	if (base_len < 1 || base_len > 8 || ext_len > 3 ||
	    (dot && (ext_len < 1 || strchr(dot + 1, '.'))))
		return false;

	uint8_t sn[11], nt_res = 0;
	memset(sn, ' ', sizeof(sn));
	for (int part = 0; part < 2; part++) {
		const char *p = part ? (dot ? dot + 1 : "") : name;
		size_t len = part ? ext_len : base_len;
		bool lower = false, upper = false;
		for (size_t i = 0; i < len; i++) {
			unsigned char c = p[i];
			if (is_lower(c))
				lower = true;
			else if (c >= 'A' && c <= 'Z')
				upper = true;
			else if (!sfn_legal(c))
				return false;
			sn[(part ? 8 : 0) + i] = to_upper(c);
		}
		if (lower && upper)
			return false;
		if (lower)
			nt_res |= part ? FAT_NT_LOWER_EXT : FAT_NT_LOWER_BASE;
	}
	memcpy(ret_short, sn, sizeof(sn));
	*ret_nt_res = nt_res;
	return true;
}

/*
 * Computes the basis of a generated short name (A.11 steps 1-2): upper
 * case, spaces and leading dots dropped, other illegal characters (every
 * non-ASCII character counts once) replaced by '_', extension = what
 * follows the last dot truncated to 3, base = the rest without dots
 * truncated to 8.  base and ext are NUL-terminated; base is never empty
 * for a name fat_long_name() accepted.  *ret_lossy says whether anything
 * was dropped, replaced or truncated (then a numeric tail is needed).
 */
void fat_short_basis(const char *name, char base[9], char ext[4],
		     bool *ret_lossy)
{
	size_t n = strlen(name), bl = 0, el = 0;
	const char *last_dot = strrchr(name, '.');
	bool lossy = false;

	/* The extension starts after the last dot that is not leading. */
	if (last_dot) {
		const char *p = name;
		while (*p == '.' || *p == ' ')
			p++;
		if (last_dot < p)
			last_dot = NULL;
	}

	for (size_t i = 0; i < n; i++) {
		unsigned char c = name[i];
		char out;

		if ((c & 0xC0) == 0x80)		/* UTF-8 continuation byte */
			continue;
		if (name + i == last_dot)
			continue;
		if (c == ' ' || c == '.') {
			lossy = true;		/* dropped */
			continue;
		}
		c = to_upper(c);
		if (sfn_legal(c)) {
			out = c;
		} else {
			out = '_';
			lossy = true;
		}
		if (last_dot && name + i > last_dot) {
			if (el < 3)
				ext[el++] = out;
			else
				lossy = true;
		} else {
			if (bl < 8)
				base[bl++] = out;
			else
				lossy = true;
		}
	}
	if (!bl) {
		base[bl++] = '_';
		lossy = true;
	}
	base[bl] = '\0';
	ext[el] = '\0';
	*ret_lossy = lossy;
}

/* An open-addressing set of 11-byte short names, for one directory. */
struct sfn_set {
	uint8_t (*names)[11];
	bool *used;
	size_t mask;
};

static uint32_t sfn_hash(const uint8_t name[11])
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	for (int i = 0; i < 11; i++)
		h = (h ^ name[i]) * 16777619u;
	return h;
}

/* Inserts name; returns false if it was already there. */
static bool sfn_insert(struct sfn_set *s, const uint8_t name[11])
{
	size_t i = sfn_hash(name) & s->mask;
	while (s->used[i]) {
		if (!memcmp(s->names[i], name, 11))
			return false;
		i = (i + 1) & s->mask;
	}
	s->used[i] = true;
	memcpy(s->names[i], name, 11);
	return true;
}

static void pad_short(uint8_t sn[11], const char *base, size_t base_len,
		      const char *tail, const char *ext)
{
	memset(sn, ' ', 11);
	memcpy(sn, base, base_len);
	memcpy(sn + base_len, tail, strlen(tail));
	memcpy(sn + 8, ext, strlen(ext));
}

/*
 * Assigns a unique short name to each of the n names of one directory
 * (A.11): first every name that fits 8.3 (with case flags) or whose basis
 * lost nothing ("Linux" -> LINUX + LFN), then, in array order, the others
 * with the lowest free numeric tail ~1, ~2, ... on the base shortened to
 * fit.  The names must be distinct ignoring case (fat_check_case_dups()).
 * Deterministic for a given order.  Returns 0, -ENOMEM, or -EEXIST if the
 * tails run out (cannot happen below FAT_MAX_DIR_SLOTS names).
 */
int fat_assign_short_names(struct fat_name *names, size_t n)
{
	size_t cap = 16;
	while (cap < 2 * n + 2)
		cap *= 2;
	_cleanup_free_ uint8_t (*set_names)[11] = calloc(cap, 11);
	_cleanup_free_ bool *used = calloc(cap, sizeof(bool));
	_cleanup_free_ bool *pending = calloc(n ? n : 1, sizeof(bool));
	/* Per basis (6 base characters + extension): the next tail to try. */
	_cleanup_free_ uint32_t *next_tail = calloc(cap, sizeof(uint32_t));
	_cleanup_free_ uint8_t (*tail_keys)[11] = calloc(cap, 11);
	if (!set_names || !used || !pending || !next_tail || !tail_keys)
		return -ENOMEM;
	struct sfn_set set = { set_names, used, cap - 1 };

	for (size_t i = 0; i < n; i++) {
		struct fat_name *fn = &names[i];
		char base[9], ext[4];
		bool lossy;

		if (fat_fits_83(fn->name, fn->short_name, &fn->nt_res)) {
			fn->lfn = false;
		} else {
			fn->lfn = true;
			fn->nt_res = 0;
			fat_short_basis(fn->name, base, ext, &lossy);
			if (lossy) {
				pending[i] = true;
				continue;
			}
			pad_short(fn->short_name, base, strlen(base), "", ext);
		}
		if (!sfn_insert(&set, fn->short_name)) {
			fn->lfn = true;		/* taken: generate one */
			fn->nt_res = 0;
			pending[i] = true;
		}
	}

	for (size_t i = 0; i < n; i++) {
		struct fat_name *fn = &names[i];
		char base[9], ext[4], tail[9];
		uint8_t key[11];

		if (!pending[i])
			continue;
		fat_short_basis(fn->name, base, ext, &(bool){ false });
		size_t bl = strlen(base);
		pad_short(key, base, bl < 6 ? bl : 6, "", ext);
		size_t k = sfn_hash(key) & (cap - 1);
		while (next_tail[k] && memcmp(tail_keys[k], key, 11))
			k = (k + 1) & (cap - 1);
		uint32_t t = next_tail[k] ? next_tail[k] : 1;

		for (;; t++) {
			if (t > 999999)
				return -EEXIST;
			int tl = snprintf(tail, sizeof(tail), "~%u", t);
			size_t keep = bl < 8 - (size_t)tl ? bl : 8 - (size_t)tl;
			pad_short(fn->short_name, base, keep, tail, ext);
			if (sfn_insert(&set, fn->short_name))
				break;
		}
		memcpy(tail_keys[k], key, 11);
		next_tail[k] = t + 1;
	}
	return 0;
}

/* Case folding for duplicate detection: ASCII and Latin-1 letters. */
static uint16_t fold(uint16_t u)
{
	if (u >= 'A' && u <= 'Z')
		return u + 0x20;
	if (u >= 0xC0 && u <= 0xDE && u != 0xD7)
		return u + 0x20;
	return u;
}

struct dup_ctx {
	const uint16_t *const *units;
	const size_t *lens;
};

static int fold_cmp(const void *a, const void *b, void *arg)
{
	const struct dup_ctx *c = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	size_t li = c->lens[i], lj = c->lens[j];

	for (size_t k = 0; k < li && k < lj; k++) {
		uint16_t x = fold(c->units[i][k]), y = fold(c->units[j][k]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return li < lj ? -1 : li > lj;
}

/*
 * Checks that no two of the n UTF-16 names are equal ignoring case (A.11:
 * every FAT driver looks names up case-insensitively).  Folds ASCII and
 * Latin-1 letters.  Returns 0, -EEXIST or -ENOMEM.
 */
int fat_check_case_dups(const uint16_t *const *units, const size_t *lens,
			size_t n)
{
	if (n < 2)
		return 0;
	_cleanup_free_ size_t *order = malloc(n * sizeof(*order));
	if (!order)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	struct dup_ctx c = { units, lens };
	qsort_r(order, n, sizeof(*order), fold_cmp, &c);
	for (size_t i = 1; i < n; i++)
		if (!fold_cmp(&order[i - 1], &order[i], &c))
			return -EEXIST;
	return 0;
}

/*
 * The LFN checksum of an 11-byte short name (A.12): rotate the 8-bit sum
 * right by one, add the next byte.
 */
uint8_t fat_lfn_checksum(const uint8_t short_name[11])
{
	uint8_t sum = 0;
	for (int i = 0; i < 11; i++)
		sum = (uint8_t)(((sum & 1) << 7) + (sum >> 1) + short_name[i]);
	return sum;
}

/* Number of LFN slots for a long name of len UTF-16 units (1..255). */
size_t fat_lfn_nslots(size_t len)
{
	return (len + FAT_LFN_CHARS - 1) / FAT_LFN_CHARS;
}

/*
 * Writes the fat_lfn_nslots(len) LFN slots of a long name into slots, in
 * disk order (A.12): highest ordinal first with FAT_LFN_LAST, down to 1.
 * A name not ending on a slot boundary gets one 0x0000 unit, then 0xFFFF.
 */
void fat_lfn_fill(void *slots, const uint16_t *units, size_t len,
		  uint8_t chksum)
{
	size_t nslots = fat_lfn_nslots(len);

	for (size_t s = 0; s < nslots; s++) {
		struct fat_lfn_slot e;
		le16 u[FAT_LFN_CHARS];

		for (size_t k = 0; k < FAT_LFN_CHARS; k++) {
			size_t i = s * FAT_LFN_CHARS + k;
			uint16_t v = i < len ? units[i] : i == len ? 0x0000 : 0xFFFF;
			u[k] = htole16(v);
		}
		memset(&e, 0, sizeof(e));
		e.ord = (uint8_t)(s + 1) | (s + 1 == nslots ? FAT_LFN_LAST : 0);
		e.attr = FAT_ATTR_LFN;
		e.chksum = chksum;
		memcpy(e.name1, u, sizeof(e.name1));
		memcpy(e.name2, u + 5, sizeof(e.name2));
		memcpy(e.name3, u + 11, sizeof(e.name3));
		memcpy((uint8_t *)slots + (nslots - 1 - s) * FAT_DIRENT_SIZE,
		       &e, sizeof(e));
	}
}

/*
 * Checks a volume label and writes its 11-byte form (A.10): at most 11
 * bytes, ASCII letters (upper-cased), digits, spaces (not leading) and the
 * short-name punctuation (A.11).  NULL, "" or "no name" give "NO NAME    ".
 * Returns 1 for a real label, 0 for none, -EINVAL for a bad one.
 */
int fat_check_label(const char *label, uint8_t ret_label[11])
{
	if (!label || !*label) {
		memcpy(ret_label, "NO NAME    ", 11);
		return 0;
	}
	size_t n = strlen(label);
	if (n > 11 || label[0] == ' ')
		return -EINVAL;
	memset(ret_label, ' ', 11);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = to_upper(label[i]);
		if (c != ' ' && !sfn_legal(c))
			return -EINVAL;
		ret_label[i] = c;
	}
	/* mkfs.fat's convention: "NO NAME" is no label, so no root entry. */
	return memcmp(ret_label, "NO NAME    ", 11) ? 1 : 0;
}
