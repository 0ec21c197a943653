/* SPDX-License-Identifier: MIT */
/*
 * storage_conf.c - the part of containers-storage.conf(5) that says where
 * podman's image store is and how its layers are written (storage.h).
 *
 * Debian 12 has no C TOML library, so this reads TOML itself, but only as
 * far as storage.conf files use it (toml.io v1.0.0): comments, [table]
 * headers (also [[array.of.tables]], skipped), key = value lines with
 * bare, quoted and dotted keys, basic and literal strings and their
 * multi-line forms, arrays (also across lines, with comments and a
 * trailing comma) and inline tables.  Integers, floats, booleans and dates
 * are taken as tokens and not interpreted.  Only the keys of struct
 * storage_conf are kept; anything else is read past.  Something it cannot
 * read is an error naming the line, never a guess.
 *
 * Which file is read, and the defaults without one: storage_locate.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "overlaywalk/storage.h"
#include "server/cleanup.h"

#define MAX_KEY_PARTS 8		/* storage.options.overlay.mount_program is 4 */
#define MAX_DEPTH 32		/* nested arrays and inline tables */

struct parser {
	const char *p, *end;
	unsigned int line;
	/* The table the following keys belong to. */
	char *table[MAX_KEY_PARTS];
	size_t ntable;
	struct storage_conf *conf;
	/* mount_program / force_mask of [storage.options]; the overlay
	 * table's win (containers-storage's GetGraphDriverOptions). */
	char *opt_mount_program, *opt_force_mask;
	bool have_overlay_mount_program, have_overlay_force_mask;
};

/* A dynamic string for decoded values. */
struct sbuf {
	char *s;
	size_t n, cap;
};

static int sbuf_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		char *p;

		while (cap < b->n + n + 1)
			cap *= 2;
		p = realloc(b->s, cap);
		if (!p)
			return -ENOMEM;
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = '\0';
	return 0;
}

static int sbuf_utf8(struct sbuf *b, uint32_t cp)
{
	char u[4];
	size_t n;

	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0)
		return -EBADMSG;	/* not a scalar value; NUL cannot be in a path */
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | cp >> 12);
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | cp >> 18);
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return sbuf_add(b, u, n);
}

static bool at_end(const struct parser *ps)
{
	return ps->p >= ps->end;
}

static bool peek_is(const struct parser *ps, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(ps->end - ps->p) >= n && !memcmp(ps->p, s, n);
}

/* Spaces and tabs. */
static void skip_ws(struct parser *ps)
{
	while (!at_end(ps) && (*ps->p == ' ' || *ps->p == '\t'))
		ps->p++;
}

/* A comment up to (not including) the end of the line; control
 * characters other than tab are not allowed in one. */
static int skip_comment(struct parser *ps)
{
	if (at_end(ps) || *ps->p != '#')
		return 0;
	for (; !at_end(ps) && *ps->p != '\n'; ps->p++) {
		unsigned char c = *ps->p;

		if ((c < 0x20 && c != '\t' && c != '\r') || c == 0x7f)
			return -EBADMSG;
	}
	return 0;
}

/* A newline ("\n" or "\r\n"); false if there is none here. */
static bool eat_newline(struct parser *ps)
{
	if (peek_is(ps, "\r\n")) {
		ps->p += 2;
		ps->line++;
		return true;
	}
	if (!at_end(ps) && *ps->p == '\n') {
		ps->p++;
		ps->line++;
		return true;
	}
	return false;
}

/* Whitespace, newlines and comments, as between array elements. */
static int skip_ws_nl(struct parser *ps)
{
	for (;;) {
		skip_ws(ps);
		if (skip_comment(ps) < 0)
			return -EBADMSG;
		if (!eat_newline(ps))
			return 0;
	}
}

/* The rest of a line after a key/value pair or a table header. */
static int end_of_line(struct parser *ps)
{
	skip_ws(ps);
	if (skip_comment(ps) < 0)
		return -EBADMSG;
	if (at_end(ps) || eat_newline(ps))
		return 0;
	return -EBADMSG;
}

static int hex_digits(struct parser *ps, int n, uint32_t *ret)
{
	uint32_t v = 0;

	if (ps->end - ps->p < n)
		return -EBADMSG;
	for (int i = 0; i < n; i++) {
		char c = *ps->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -EBADMSG;
	}
	*ret = v;
	return 0;
}

/* The escape after a backslash of a basic string (p past the backslash). */
static int escape(struct parser *ps, struct sbuf *b, bool multi)
{
	uint32_t cp;
	char e;
	int r;

	if (at_end(ps))
		return -EBADMSG;
	e = *ps->p++;
	switch (e) {
	case 'b': return sbuf_add(b, "\b", 1);
	case 't': return sbuf_add(b, "\t", 1);
	case 'n': return sbuf_add(b, "\n", 1);
	case 'f': return sbuf_add(b, "\f", 1);
	case 'r': return sbuf_add(b, "\r", 1);
	case 'e': return sbuf_add(b, "\x1b", 1);
	case '"': return sbuf_add(b, "\"", 1);
	case '\\': return sbuf_add(b, "\\", 1);
	case 'u':
	case 'U':
		r = hex_digits(ps, e == 'u' ? 4 : 8, &cp);
		return r < 0 ? r : sbuf_utf8(b, cp);
	}
	if (!multi)
		return -EBADMSG;
	/* A line-ending backslash: whitespace and newlines up to the next
	 * other character go. */
	ps->p--;
	skip_ws(ps);
	if (!eat_newline(ps))
		return -EBADMSG;
	while (!at_end(ps) && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' ||
			       *ps->p == '\r'))
		if (!eat_newline(ps))
			ps->p++;
	return 0;
}

/*
 * A string into b, the opening quote at p: basic ("...", with escapes)
 * or literal ('...'), each also multi-line (""" or ''', where a newline
 * right after the opening quotes is trimmed and up to two more quotes
 * before the closing ones belong to the string).
 */
static int string(struct parser *ps, struct sbuf *b)
{
	const char q = *ps->p;
	const char triple[4] = { q, q, q, '\0' };
	bool multi = peek_is(ps, triple), basic = q == '"';
	int r;

	ps->p += multi ? 3 : 1;
	if (multi)
		eat_newline(ps);
	for (;;) {
		unsigned char c;

		if (at_end(ps))
			return -EBADMSG;
		if (multi && peek_is(ps, triple)) {
			ps->p += 3;
			for (int k = 0; k < 2 && !at_end(ps) && *ps->p == q; k++, ps->p++)
				if (sbuf_add(b, &q, 1) < 0)
					return -ENOMEM;
			break;
		}
		c = *ps->p;
		if (!multi && c == q) {
			ps->p++;
			break;
		}
		if (basic && c == '\\') {
			ps->p++;
			r = escape(ps, b, multi);
			if (r < 0)
				return r;
			continue;
		}
		if (c == '\n' || peek_is(ps, "\r\n")) {
			if (!multi)
				return -EBADMSG;
			eat_newline(ps);
			if (sbuf_add(b, "\n", 1) < 0)
				return -ENOMEM;
			continue;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -EBADMSG;
		if (sbuf_add(b, ps->p, 1) < 0)
			return -ENOMEM;
		ps->p++;
	}
	return 0;
}

static bool bare_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* One part of a key: bare, "basic" or 'literal'.  *ret malloc'ed. */
static int simple_key(struct parser *ps, char **ret)
{
	struct sbuf b = { 0 };
	int r = 0;

	if (at_end(ps))
		return -EBADMSG;
	if ((*ps->p == '"' && !peek_is(ps, "\"\"\"")) ||
	    (*ps->p == '\'' && !peek_is(ps, "'''")))
		r = string(ps, &b);	/* keys are single-line strings */
	else {
		const char *s = ps->p;

		while (!at_end(ps) && bare_char(*ps->p))
			ps->p++;
		if (ps->p == s)
			return -EBADMSG;
		r = sbuf_add(&b, s, ps->p - s);
	}
	if (r == 0 && !b.s)
		r = sbuf_add(&b, "", 0);	/* "" is a valid key */
	if (r < 0) {
		free(b.s);
		return r;
	}
	*ret = b.s;
	return 0;
}

static void free_parts(char **parts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(parts[i]);
}

/* A dotted key into parts[] (at most MAX_KEY_PARTS; more is an error). */
static int dotted_key(struct parser *ps, char **parts, size_t *ret_n)
{
	size_t n = 0;
	int r;

	for (;;) {
		skip_ws(ps);
		if (n == MAX_KEY_PARTS) {
			r = -EBADMSG;
			goto fail;
		}
		r = simple_key(ps, &parts[n]);
		if (r < 0)
			goto fail;
		n++;
		skip_ws(ps);
		if (at_end(ps) || *ps->p != '.')
			break;
		ps->p++;
	}
	*ret_n = n;
	return 0;
fail:
	free_parts(parts, n);
	return r;
}

/* A value that is not a string, array or inline table: a number, a
 * boolean or a date, read as a token of the characters they use. */
static int scalar_token(struct parser *ps)
{
	const char *s = ps->p;

	while (!at_end(ps) && (bare_char(*ps->p) || *ps->p == '+' || *ps->p == '.' ||
			       *ps->p == ':' ||
			       /* a date-time's separating space: "1979-05-27 07:32:00" */
			       (*ps->p == ' ' && ps->p > s && ps->end - ps->p > 1 &&
				ps->p[1] >= '0' && ps->p[1] <= '9' && ps->p[-1] >= '0' &&
				ps->p[-1] <= '9' && memchr(s, '-', ps->p - s))))
		ps->p++;
	return ps->p == s ? -EBADMSG : 0;
}

/* What value() should do with the strings it reads. */
struct sink {
	char **str;		/* a string value goes here (replacing) */
	char ***strv;		/* array elements go here (replacing) */
	size_t *nstrv;
	bool string_ok;		/* a non-string value for this key is an error */
};

static int value(struct parser *ps, const struct sink *sk, int depth);

static int keyval_in_inline(struct parser *ps, int depth)
{
	char *parts[MAX_KEY_PARTS];
	size_t n;
	int r;

	r = dotted_key(ps, parts, &n);
	if (r < 0)
		return r;
	free_parts(parts, n);	/* nothing inside an inline table is ours */
	skip_ws(ps);
	if (at_end(ps) || *ps->p != '=')
		return -EBADMSG;
	ps->p++;
	skip_ws(ps);
	return value(ps, NULL, depth + 1);
}

static int value(struct parser *ps, const struct sink *sk, int depth)
{
	struct sbuf b = { 0 };
	int r;

	if (depth > MAX_DEPTH || at_end(ps))
		return -EBADMSG;
	if (*ps->p == '"' || *ps->p == '\'') {
		r = string(ps, &b);
		if (r == 0 && !b.s)
			r = sbuf_add(&b, "", 0);
		if (r < 0) {
			free(b.s);
			return r;
		}
		if (sk && sk->str) {
			free(*sk->str);
			*sk->str = b.s;
		} else if (sk && sk->strv) {
			char **v = reallocarray(*sk->strv, *sk->nstrv + 2, sizeof(*v));

			if (!v) {
				free(b.s);
				return -ENOMEM;
			}
			v[(*sk->nstrv)++] = b.s;
			v[*sk->nstrv] = NULL;
			*sk->strv = v;
		} else {
			free(b.s);
		}
		return 0;
	}
	if (*ps->p == '[') {
		struct sink elem = { 0 };

		if (sk && sk->strv) {
			/* A new array replaces what an earlier file said. */
			storage_strv_free(*sk->strv, *sk->nstrv);
			*sk->strv = NULL;
			*sk->nstrv = 0;
			elem = (struct sink){ .strv = sk->strv, .nstrv = sk->nstrv };
		} else if (sk && sk->str) {
			return -EBADMSG;	/* a string was expected */
		}
		ps->p++;
		for (;;) {
			if (skip_ws_nl(ps) < 0)
				return -EBADMSG;
			if (at_end(ps))
				return -EBADMSG;
			if (*ps->p == ']') {
				ps->p++;
				return 0;
			}
			r = value(ps, sk && sk->strv ? &elem : NULL, depth + 1);
			if (r < 0)
				return r;
			if (skip_ws_nl(ps) < 0 || at_end(ps))
				return -EBADMSG;
			if (*ps->p == ',')
				ps->p++;
			else if (*ps->p != ']')
				return -EBADMSG;
		}
	}
	if (sk && (sk->str || sk->strv) && !sk->string_ok)
		return -EBADMSG;
	if (*ps->p == '{') {
		ps->p++;
		skip_ws(ps);
		if (!at_end(ps) && *ps->p == '}') {
			ps->p++;
			return 0;
		}
		for (;;) {
			r = keyval_in_inline(ps, depth);
			if (r < 0)
				return r;
			skip_ws(ps);
			if (at_end(ps))
				return -EBADMSG;
			if (*ps->p == '}') {
				ps->p++;
				return 0;
			}
			if (*ps->p != ',')
				return -EBADMSG;
			ps->p++;
			skip_ws(ps);
		}
	}
	return scalar_token(ps);
}

static bool parts_are(char *const *parts, size_t n, const char *const *want, size_t nwant)
{
	if (n != nwant)
		return false;
	for (size_t i = 0; i < n; i++)
		if (strcmp(parts[i], want[i]))
			return false;
	return true;
}

/* Where a key (table path + key parts) of ours goes; an all-zero sink if
 * it is not one of ours. */
static struct sink sink_for(struct parser *ps, char *const *parts, size_t n)
{
	static const char *const driver[] = { "storage", "driver" };
	static const char *const graphroot[] = { "storage", "graphroot" };
	static const char *const rootless[] = { "storage", "rootless_storage_path" };
	static const char *const mp[] = { "storage", "options", "mount_program" };
	static const char *const ovl_mp[] = { "storage", "options", "overlay", "mount_program" };
	static const char *const fm[] = { "storage", "options", "force_mask" };
	static const char *const ovl_fm[] = { "storage", "options", "overlay", "force_mask" };
	static const char *const stores[] = { "storage", "options", "additionalimagestores" };
	struct storage_conf *c = ps->conf;

	if (parts_are(parts, n, driver, 2))
		return (struct sink){ .str = &c->driver };
	if (parts_are(parts, n, graphroot, 2))
		return (struct sink){ .str = &c->graphroot };
	if (parts_are(parts, n, rootless, 2))
		return (struct sink){ .str = &c->rootless_storage_path };
	if (parts_are(parts, n, mp, 3))
		return (struct sink){ .str = &ps->opt_mount_program };
	if (parts_are(parts, n, ovl_mp, 4)) {
		ps->have_overlay_mount_program = true;
		return (struct sink){ .str = &c->mount_program };
	}
	if (parts_are(parts, n, fm, 3))
		return (struct sink){ .str = &ps->opt_force_mask, .string_ok = true };
	if (parts_are(parts, n, ovl_fm, 4)) {
		ps->have_overlay_force_mask = true;
		return (struct sink){ .str = &c->force_mask, .string_ok = true };
	}
	if (parts_are(parts, n, stores, 3))
		return (struct sink){ .strv = &c->image_stores, .nstrv = &c->nimage_stores };
	return (struct sink){ 0 };
}

static int keyval(struct parser *ps)
{
	char *parts[2 * MAX_KEY_PARTS];
	size_t nkey, n;
	struct sink sk;
	char *tok;
	int r;

	for (n = 0; n < ps->ntable; n++)
		parts[n] = ps->table[n];
	r = dotted_key(ps, parts + n, &nkey);
	if (r < 0)
		return r;
	skip_ws(ps);
	if (at_end(ps) || *ps->p != '=') {
		free_parts(parts + n, nkey);
		return -EBADMSG;
	}
	ps->p++;
	skip_ws(ps);
	sk = sink_for(ps, parts, n + nkey);
	free_parts(parts + n, nkey);
	tok = NULL;
	if (sk.str && sk.string_ok) {
		/* force_mask may also be written as a bare octal number. */
		const char *s = ps->p;

		if (!at_end(ps) && *s != '"' && *s != '\'') {
			r = scalar_token(ps);
			if (r < 0)
				return r;
			tok = strndup(s, ps->p - s);
			if (!tok)
				return -ENOMEM;
			free(*sk.str);
			*sk.str = tok;
			return end_of_line(ps);
		}
	}
	r = value(ps, sk.str || sk.strv ? &sk : NULL, 0);
	if (r < 0)
		return r;
	return end_of_line(ps);
}

static int table_header(struct parser *ps)
{
	bool array = peek_is(ps, "[[");
	char *parts[MAX_KEY_PARTS];
	size_t n;
	int r;

	ps->p += array ? 2 : 1;
	r = dotted_key(ps, parts, &n);
	if (r < 0)
		return r;
	skip_ws(ps);
	if (!peek_is(ps, array ? "]]" : "]")) {
		free_parts(parts, n);
		return -EBADMSG;
	}
	ps->p += array ? 2 : 1;
	free_parts(ps->table, ps->ntable);
	if (array) {
		/* [[x]]: an array of tables; nothing of ours lives in one. */
		free_parts(parts, n);
		ps->table[0] = strdup("[[array]]");
		ps->ntable = ps->table[0] ? 1 : 0;
		if (!ps->table[0])
			return -ENOMEM;
	} else {
		memcpy(ps->table, parts, n * sizeof(*parts));
		ps->ntable = n;
	}
	return end_of_line(ps);
}

int storage_conf_parse(const char *text, size_t len, struct storage_conf *conf,
		       unsigned int *ret_line)
{
	struct parser ps = { .p = text, .end = text + len, .line = 1, .conf = conf };
	int r = 0;

	/* A UTF-8 byte order mark is allowed. */
	if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
		ps.p += 3;
	while (!at_end(&ps)) {
		if (skip_ws_nl(&ps) < 0) {
			r = -EBADMSG;
			break;
		}
		if (at_end(&ps))
			break;
		if (*ps.p == '[')
			r = table_header(&ps);
		else
			r = keyval(&ps);
		if (r < 0)
			break;
	}
	if (r == 0) {
		if (ps.opt_mount_program && !ps.have_overlay_mount_program) {
			free(conf->mount_program);
			conf->mount_program = TAKE_PTR(ps.opt_mount_program);
		}
		if (ps.opt_force_mask && !ps.have_overlay_force_mask) {
			free(conf->force_mask);
			conf->force_mask = TAKE_PTR(ps.opt_force_mask);
		}
	}
	free(ps.opt_mount_program);
	free(ps.opt_force_mask);
	free_parts(ps.table, ps.ntable);
	if (r < 0 && ret_line)
		*ret_line = ps.line;
	return r;
}

void storage_conf_free(struct storage_conf *conf)
{
	if (!conf)
		return;
	free(conf->driver);
	free(conf->graphroot);
	free(conf->rootless_storage_path);
	free(conf->mount_program);
	free(conf->force_mask);
	storage_strv_free(conf->image_stores, conf->nimage_stores);
	memset(conf, 0, sizeof(*conf));
}
